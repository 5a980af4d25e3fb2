/**
 * state_dir as the agent uses it, found wanting in issues 25 (findings 5 and 7) and 22 (items
 * 8 and 9): a full disk, files that are not what the agent wrote, a second agent on the same
 * state_dir, a dry run. Real agent processes; the holdings come in as snapshot parts over MQTT.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOCK_FILE } from '../../agent/state-dir/lock.js';
import { encodeSnapshot } from '../../src/snapshot.js';
import { addressBlock } from '../support/fleet-helpers.js';
import { residentMb } from '../support/memory.js';
import { connectedClient } from '../support/mqtt-client.js';
import { AGENT_SERVICE } from '../support/paths.js';
import { freePort } from '../support/ports.js';
import { RunningProcess } from '../support/process.js';
import { SimHost } from '../support/sim-host.js';
import { part } from '../support/status.js';
import { TinyDisk } from '../support/tiny-disk.js';
import { waitFor } from '../support/wait.js';

/** A host without fail2ban whose jail sshd is mapped (to an alias of a firewall that is not there), so that the agent holds what it gets. */
async function hostOn(name: string, ip: string, stateDir: string): Promise<SimHost> {
  const port = await freePort(ip);
  return SimHost.start({
    name,
    ip,
    port,
    fail2ban: false,
    jails: {},
    extra: ['opn_fw_sync = true', 'opn_fw_ip = 127.0.0.1:1', `state_dir = ${stateDir}`],
    sections: ['[opn_aliases]', 'sshd = bans', '', '[opn_keys]', '127.0.0.1:1_key = k', '127.0.0.1:1_secret = s'],
  });
}

/** Sends host-x's complete snapshot of `addresses` for sshd to the host's own broker. */
async function sendSnapshot(host: SimHost, addresses: readonly string[]): Promise<void> {
  const client = await connectedClient(`mqtt://${host.options.ip}:${host.options.port}`);
  try {
    for (const payload of encodeSnapshot('host-x', addresses)) await client.publishAsync('f2b/sshd/snapshot', payload, { qos: 1 });
  } finally {
    await client.endAsync();
  }
}

async function holdings(host: SimHost): Promise<number> {
  const fleet = part(await host.agentStatus(), 'fleet');
  return fleet.measures.holdings && 'values' in fleet.measures.holdings ? (fleet.measures.holdings.values['sshd'] ?? 0) : 0;
}

async function fleetProblems(host: SimHost): Promise<string[]> {
  return part(await host.agentStatus(), 'fleet').problems.map((problem) => `${problem.what}; fix: ${problem.fix}`);
}

/** Starts the agent on the host's config and waits for its exit: for starts that must fail. */
async function failedStart(host: SimHost): Promise<{ code: number | null; output: string }> {
  const agent = new RunningProcess(process.execPath, [...AGENT_SERVICE, '--config', host.configPath]);
  const code = await Promise.race([agent.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 30_000))]);
  if (code === 'hung') {
    await agent.stop('SIGKILL');
    throw new Error(`the agent did not exit: ${agent.output.slice(-2000)}`);
  }
  return { code, output: agent.output };
}

describe('state_dir: what the agent does with it', function () {
  this.timeout(300_000);
  let dir: string;
  const hosts: SimHost[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-state-dir-'));
  });
  afterEach(async () => {
    await Promise.all(hosts.splice(0).map((host) => host.stop()));
    await rm(dir, { recursive: true, force: true });
  });

  it('on a full disk, keeps what it accepted and says it is not on disk; after kill -9 everything accepted comes back or was reported, and all of it once there is space', async () => {
    const disk = await TinyDisk.mount(64);
    try {
      const host = await hostOn('full-disk', '127.0.3.1', join(disk.path, 'state'));
      hosts.push(host);
      await host.startAgent();
      const addresses = addressBlock(71, 6_000); // about 150 KB of journal for 64 KiB
      await sendSnapshot(host, addresses);
      await waitFor(async () => (await holdings(host)) === addresses.length, 'every address accepted');
      const problems = await waitFor(async () => {
        const found = await fleetProblems(host);
        return found.length > 0 ? found : null;
      }, 'the full disk in status');
      const unsaved = Number(/: (\d+) change\(s\) are kept in memory only/.exec(problems[0]!)?.[1]);
      expect(problems[0]).to.match(/^the holdings store cannot be written to .*holdings\.journal \(ENOSPC.*\): \d+ change\(s\) are kept in memory only; fix: free space on the filesystem of .* \(df -h /);
      expect(unsaved).to.be.greaterThan(0);
      expect((await host.status()).healthy).to.equal(false);

      await host.requireAgent().stop('SIGKILL');
      await host.startAgent();
      const back = await holdings(host);
      expect(back, 'not all of it was on disk (the test filled it)').to.be.below(addresses.length);
      expect(back + unsaved, 'what did not come back is what status said was not on disk').to.be.at.least(addresses.length);

      // Space again: the origin's next -f brings the rest, and now all of it is kept.
      await disk.resize(4096);
      await sendSnapshot(host, addresses);
      await waitFor(async () => (await holdings(host)) === addresses.length && (await fleetProblems(host)).length === 0, 'everything held, and on disk', 60_000);
      await host.requireAgent().stop('SIGKILL');
      await host.startAgent();
      expect(await holdings(host)).to.equal(addresses.length);
    } finally {
      await Promise.all(hosts.splice(0).map((host) => host.stop()));
      await disk.unmount();
    }
  });

  it('a 512 MB journal does not take the memory of its size; a FIFO or a link in state_dir stops the start at once with exit 78, the file and the fix', async () => {
    const stateDir = join(dir, 'state');
    const host = await hostOn('big-journal', '127.0.3.2', stateDir);
    hosts.push(host);
    await host.startAgent(); // creates state_dir and its files
    await host.requireAgent().stop();
    await truncate(join(stateDir, 'holdings.journal'), 512 * 2 ** 20);
    await host.startAgent();
    expect((await residentMb(host.requireAgent().child.pid!)).peak, 'MB at peak').to.be.below(200);
    await host.requireAgent().stop();

    await rm(join(stateDir, 'holdings.journal'));
    execFileSync('mkfifo', [join(stateDir, 'holdings.journal')]);
    const fifo = await failedStart(host);
    expect(fifo.code).to.equal(78);
    expect(fifo.output).to.include(`state_dir: ${join(stateDir, 'holdings.journal')} is not a regular file, where syncfail2ban keeps a file of its own: it was not made by syncfail2ban; fix: remove it`);
  });

  it('refuses a second agent on the same state_dir with exit 78 naming the first one\'s pid; takes over the lock of one killed; keeps it across a reload', async () => {
    const stateDir = join(dir, 'state');
    const first = await hostOn('lock-first', '127.0.3.3', stateDir);
    const second = await hostOn('lock-second', '127.0.3.4', stateDir);
    hosts.push(first, second);
    await first.startAgent();
    const pid = first.requireAgent().child.pid!;
    const refused = await failedStart(second);
    expect(refused.code).to.equal(78);
    expect(refused.output).to.include(`syncfail2ban: state_dir: ${stateDir} is in use by another syncfail2ban agent (pid ${pid}, see ${join(stateDir, LOCK_FILE)})`);
    expect(first.requireAgent().alive, 'the first runs on').to.equal(true);

    // A reload builds a new agent in the same process: it keeps the lock.
    first.requireAgent().child.kill('SIGHUP');
    await first.requireAgent().waitForOutput(/config reloaded/, 'the reload');
    expect((await failedStart(second)).code).to.equal(78);

    await first.requireAgent().stop('SIGKILL');
    expect(await readFile(join(stateDir, LOCK_FILE), 'utf8'), 'left by the killed agent').to.match(new RegExp(`^${pid} `));
    await second.startAgent();
    expect(await readFile(join(stateDir, LOCK_FILE), 'utf8')).to.match(new RegExp(`^${second.requireAgent().child.pid} `));
    await second.requireAgent().stop();
    expect(await readdir(stateDir), 'removed at stop').to.not.include(LOCK_FILE);
  });

  it('a dry run reads state_dir and writes nothing there: what it received is not applied by the next real start', async () => {
    const stateDir = join(dir, 'state');
    const host = await hostOn('dry-run', '127.0.3.5', stateDir);
    hosts.push(host);
    await host.startAgent();
    await sendSnapshot(host, addressBlock(72, 10));
    await waitFor(async () => (await holdings(host)) === 10, 'the real run holds 10');
    await host.requireAgent().stop();
    const files = async () => {
      const names = (await readdir(stateDir)).sort();
      return Promise.all(names.map(async (name) => ({ name, content: await readFile(join(stateDir, name), 'utf8'), mtime: (await stat(join(stateDir, name))).mtimeMs })));
    };
    const before = await files();

    await host.startAgent(['--dry-run']);
    expect(await holdings(host), 'it reads what is there').to.equal(10);
    await sendSnapshot(host, [...addressBlock(72, 10), ...addressBlock(73, 20)]); // host-x's whole set now
    await waitFor(async () => (await holdings(host)) === 30, 'the dry run takes them in');
    await host.requireAgent().stop();
    expect(await files(), 'not a byte written, no file touched').to.deep.equal(before);

    await host.startAgent();
    expect(await holdings(host), 'the next real start knows nothing of them').to.equal(10);
  });
});
