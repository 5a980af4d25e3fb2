import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requestStatus } from '../../src/control-protocol.js';
import { Fail2banClient } from '../../src/fail2ban/client.js';
import { startFail2ban, type Fail2banServer, type JailSpec } from '../support/fail2ban-server.js';
import { AGENT_SERVICE, BIN, ROOT } from '../support/paths.js';
import { freePortOn } from '../support/ports.js';
import { RunningProcess } from '../support/process.js';
import { waitFor } from '../support/wait.js';
import { median, percentile } from './stats.js';

/** Bans per measurement without an action and with the Python action; the shell action gets SHELL_BANS, scaled. */
const BANS = 1_000;
const SHELL_BANS = 20;
const ROUNDS = 15;
const SHELL_ROUNDS = 3;
/** Bans timed one by one from fail2ban on A to B's sync jail. */
const LATENCY_BANS = 150;
const SHELL_LATENCY_BANS = 30;

const address = (block: number, i: number) => `10.${block}.${Math.floor(i / 256) % 256}.${i % 256}`;
const addresses = (block: number, count: number) => Array.from({ length: count }, (_, i) => address(block, i));

/**
 * What a ban costs fail2ban itself with each sync action, and how long it takes to reach
 * another host. fail2ban runs every shell action under one server-wide lock, so its time
 * for a burst of bans is the time the host's own protection stands still.
 *
 *  1. fail2ban's wall time (and its CPU time) for one `set <jail> banip` of 1,000 addresses
 *     into a jail with no sync action, with the Python action (syncfail2ban.py, the agent
 *     running and publishing every event), and with the shell action (syncfail2ban-client
 *     per ban; 20, scaled), on one fail2ban server, in turn.
 *  2. End to end: from the moment A's fail2ban is told to ban an address to the moment B's
 *     fail2ban bans it in its sync jail (a Python action there records the time), one ban at
 *     a time, over a mesh of real agents: with the Python action on A, and with the shell
 *     action on A' for comparison.
 */
export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sf2b-action-cost-'));
  const hosts: Host[] = [];
  try {
    const [ipA, ipShell, ipB] = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
    const port = await freePortOn([ipA!, ipShell!, ipB!]);
    const a = await Host.start(dir, 'a', ipA!, port, [ipB!], [
      { name: 'none', kind: 'primary', action: '' },
      { name: 'python', kind: 'primary', action: '@PYTHON@' },
      { name: 'shell', kind: 'primary', action: '@SHELL@' },
      { name: 'sshd', kind: 'primary', action: '@PYTHON@' },
    ]);
    hosts.push(a);
    const shellHost = await Host.start(dir, 'ashell', ipShell!, port, [ipB!], [{ name: 'sshd', kind: 'primary', action: '@SHELL@' }]);
    hosts.push(shellHost);
    const b = await Host.start(dir, 'b', ipB!, port, [ipA!, ipShell!], [{ name: 'sshd-sync', kind: 'sync', action: 'record-time.py' }]);
    hosts.push(b);
    await Promise.all(hosts.map((host) => host.waitSubscribed(host === b ? 3 : 2)));

    await fail2banCost(a);
    await endToEnd(a, shellHost, b);
  } finally {
    await Promise.all(hosts.map((host) => host.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

async function fail2banCost(a: Host): Promise<void> {
  const client = new Fail2banClient(a.fail2ban.socket, { timeoutMs: 600_000 });
  const wall: Record<Jail, number[]> = { none: [], python: [], shell: [] };
  const cpu: Record<Jail, number[]> = { none: [], python: [], shell: [] };
  const pid = a.fail2ban.pid!;
  try {
    let block = 10;
    for (let round = 0; round < ROUNDS; round++) {
      // In turn, the order swapped every round, so that a machine whose load drifts weighs on all alike.
      const order: Jail[] = round % 2 ? ['none', 'python', 'shell'] : ['python', 'none', 'shell'];
      for (const jail of order) {
        if (jail === 'shell' && round >= SHELL_ROUNDS) continue;
        const count = jail === 'shell' ? SHELL_BANS : BANS;
        const ips = addresses(block++, count);
        const cpuBefore = await cpuNs(pid);
        const start = process.hrtime.bigint();
        const banned = await client.command(['set', jail, 'banip', ...ips]);
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        const cpuMs = (await cpuNs(pid)) - cpuBefore;
        if (banned !== count) throw new Error(`fail2ban banned ${String(banned)} of ${count} in ${jail}`);
        wall[jail].push((ms * BANS) / count);
        cpu[jail].push((cpuMs / 1e6) * (BANS / count));
      }
    }
    const published = await waitFor(async () => {
      const publisher = (await a.status()).parts.find((part) => part.kind === 'publisher')!;
      const value = (publisher.measures.published as { value: number }).value;
      return value >= ROUNDS * BANS ? value : 0;
    }, 'every ban of the python jail published', 120_000);
    const ratios = (jail: Jail, of: Record<Jail, number[]>) => median(of[jail].map((value, round) => value / of.none[round]!));
    const line = (jail: Jail) => `wall ${median(wall[jail]).toFixed(0)} ms, fail2ban's CPU ${median(cpu[jail]).toFixed(0)} ms`;
    console.log(`measured: one "set <jail> banip" of ${BANS} addresses on one fail2ban server, jails in turn; medians of ${ROUNDS} rounds (shell: ${SHELL_ROUNDS} rounds of ${SHELL_BANS} bans, scaled to ${BANS})`);
    console.log("  (wall: how long fail2ban took; CPU: what all of fail2ban-server's threads used meanwhile, which the machine's other load hardly moves)");
    console.log(`  no sync action:                               ${line('none')}`);
    console.log(`  Python action (syncfail2ban.py), agent up:    ${line('python')}; ${published} events published by the agent`);
    console.log(`  shell action (syncfail2ban-client per ban):   ${line('shell')}`);
    console.log(`  Python / none: wall ${ratios('python', wall).toFixed(2)}x (median of the rounds' ratios; ratio of the medians ${(median(wall.python) / median(wall.none)).toFixed(2)}x), CPU ${ratios('python', cpu).toFixed(2)}x (target <= 1.2x)`);
    console.log(`  shell / none: wall ${ratios('shell', wall).toFixed(0)}x; shell / Python: wall ${(median(wall.shell) / median(wall.python)).toFixed(0)}x`);
  } finally {
    await client.close();
  }
}

type Jail = 'none' | 'python' | 'shell';

/** CPU time used so far by every thread of the process, in ns (/proc/<pid>/task/<tid>/schedstat). */
async function cpuNs(pid: number): Promise<number> {
  const tasks = await readdir(`/proc/${pid}/task`);
  const times = await Promise.all(tasks.map((task) => readFile(`/proc/${pid}/task/${task}/schedstat`, 'utf8').then((text) => Number(text.split(' ')[0]), () => 0)));
  return times.reduce((sum, ns) => sum + ns, 0);
}

async function endToEnd(a: Host, shellHost: Host, b: Host): Promise<void> {
  const python = await latencies(a, b, 30, LATENCY_BANS);
  const shell = await latencies(shellHost, b, 31, SHELL_LATENCY_BANS);
  const line = (values: number[]) => `p50 ${percentile(values, 50).toFixed(1)} ms, p99 ${percentile(values, 99).toFixed(1)} ms, max ${Math.max(...values).toFixed(1)} ms`;
  console.log("measured: end to end, from A's fail2ban being told to ban to B's fail2ban banning in its sync jail (mesh, one ban at a time)");
  console.log(`  Python action:  ${line(python)} over ${python.length} bans (target p50 <= 50 ms, p99 <= 150 ms)`);
  console.log(`  shell action:   ${line(shell)} over ${shell.length} bans`);
}

/** One ban at a time on `origin`'s sshd jail; how long until `b`'s recorder saw each. */
async function latencies(origin: Host, b: Host, block: number, count: number): Promise<number[]> {
  const client = new Fail2banClient(origin.fail2ban.socket, { timeoutMs: 60_000 });
  const result: number[] = [];
  try {
    for (const ip of addresses(block, count)) {
      const sent = Date.now();
      await client.command(['set', 'sshd', 'banip', ip]);
      const bannedAt = await waitFor(async () => b.recorded().then((times) => times.get(ip)), `${ip} in B's sync jail`, 30_000, 2);
      result.push(bannedAt - sent);
    }
  } finally {
    await client.close();
  }
  return result;
}

/** Records, in the sync jail, when fail2ban banned each address (seconds since the epoch): no process, no lock. */
const RECORD_TIME_ACTION = `import time
from fail2ban.server.action import ActionBase

class Action(ActionBase):
\tdef __init__(self, jail, name, path=None):
\t\tsuper(Action, self).__init__(jail, name)
\t\tself._path = path

\tdef start(self):
\t\tpass

\tdef stop(self):
\t\tpass

\tdef ban(self, aInfo):
\t\twith open(self._path, 'a') as out:
\t\t\tout.write('%s %.6f\\n' % (aInfo['ip'], time.time()))

\tdef unban(self, aInfo):
\t\tpass
`;

/** A simulated host: a private fail2ban with the given jails and an agent in a mesh. */
class Host {
  private constructor(
    readonly name: string,
    readonly fail2ban: Fail2banServer,
    private readonly agent: RunningProcess,
    private readonly controlSocket: string,
    private readonly timesFile: string,
  ) {}

  static async start(root: string, name: string, ip: string, port: number, peers: string[], jails: JailSpec[]): Promise<Host> {
    const dir = await mkdtemp(join(root, `${name}-`));
    const config = join(dir, 'config.cfg');
    const client = join(dir, 'syncfail2ban-client');
    const timesFile = join(dir, 'times');
    const controlSocket = join(dir, 'control.sock');
    await writeFile(client, `#!/bin/sh\nexec ${process.execPath} ${BIN.client} --config ${config} "$@"\n`);
    await chmod(client, 0o755);
    const primaries = jails.filter((jail) => jail.kind === 'primary').map((jail) => jail.name);
    await writeFile(config, [
      `node_id = ${name}`, `mq_ip = ${ip}`, `mq_port = ${port}`, `sync_servers = ${peers.join(' ')}`, `control_socket = ${controlSocket}`,
      `state_dir = ${join(dir, 'state')}`, `f2b_sync = ${primaries.length === 0}`, 'connection_timeout = 5', 'rate_limit = 100000', 'rate_burst = 100000',
      '[jails]', ...(primaries.length ? primaries.map((jail) => `${jail} = ${jail}-sync`) : ['sshd = sshd-sync']), '',
    ].join('\n'));
    const fill = (action: string | undefined) =>
      action?.replace('@PYTHON@', `syncfail2ban.py[config=${config}]`).replace('@SHELL@', `sync-action[client="${client}"]`).replace('record-time.py', `record-time.py[path=${timesFile}]`);
    const fail2ban = await startFail2ban({
      name,
      jails: jails.map((jail) => ({ ...jail, action: fill(jail.action) })),
      actionFiles: { 'sync-action': await readFile(join(ROOT, 'etc/fail2ban/action.d/sync-action.conf'), 'utf8') },
      pythonActions: { syncfail2ban: await readFile(join(ROOT, 'etc/fail2ban/action.d/syncfail2ban.py'), 'utf8'), 'record-time': RECORD_TIME_ACTION },
    });
    await writeFile(config, `fail2ban_socket = ${fail2ban.socket}\n${await readFile(config, 'utf8')}`);
    const agent = new RunningProcess(process.execPath, [...AGENT_SERVICE, '--config', config], { SYNCFAIL2BAN_LOG_LEVEL: 'warn' });
    return new Host(name, fail2ban, agent, controlSocket, timesFile);
  }

  status() {
    return requestStatus(this.controlSocket, 10_000).then((report) => report.status);
  }

  async waitSubscribed(count: number): Promise<void> {
    await waitFor(async () => {
      if (!this.agent.alive) throw new Error(`${this.name}'s agent exited: ${this.agent.output.slice(-2000)}`);
      const links = (await this.status()).parts.filter((part) => part.kind === 'link' && part.details.state === 'connected');
      return links.length >= count;
    }, `${this.name} subscribed on ${count} broker(s)`, 30_000);
  }

  /** Address -> when the sync jail banned it (ms since the epoch). */
  async recorded(): Promise<Map<string, number>> {
    const text = await readFile(this.timesFile, 'utf8').catch(() => '');
    return new Map(text.split('\n').filter(Boolean).map((line) => {
      const [ip, seconds] = line.split(' ') as [string, string];
      return [ip, Number(seconds) * 1000];
    }));
  }

  async stop(): Promise<void> {
    await this.agent.stop();
    await this.fail2ban.stop();
  }
}
