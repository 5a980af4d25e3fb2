import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jailLocal } from '../support/jail-local.js';
import { NetNamespace } from '../support/netns.js';
import { waitForSetNames } from '../support/nft-sets.js';
import { ORIGINAL_UNIT } from '../support/original-install.js';
import { AGENT_SERVICE, ROOT } from '../support/paths.js';
import { freePort } from '../support/ports.js';
import { RunningProcess } from '../support/process.js';
import { run, type RunResult } from '../support/run.js';
import { measured, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';
import type { AgentStatus } from '../../src/status.js';

const execFileAsync = promisify(execFile);
const LIB = '/usr/local/lib/syncfail2ban';

/** `make install DESTDIR=...` into temp dirs, from this checkout's dist/ as built (NO_BUILD). */
function make(target: 'install' | 'uninstall', destdir: string): Promise<RunResult> {
  return run('make', ['-s', '-C', ROOT, target, `DESTDIR=${destdir}`, 'NO_BUILD=1'], 120_000);
}

async function mode(path: string): Promise<string> {
  return ((await stat(path)).mode & 0o777).toString(8);
}

/** Every file (not directory) under `dir`, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => !entry.isDirectory())
    .map((entry) => join(entry.parentPath ?? entry.path, entry.name).slice(dir.length + 1))
    .sort();
}

describe('make install / make uninstall (DESTDIR, no systemctl)', function () {
  this.timeout(180_000);
  let tmp: string;
  let root: string;
  let first: RunResult;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'sf2b-install-'));
    root = join(tmp, 'root');
    first = await make('install', root);
    expect(first.code, first.stdout + first.stderr).to.equal(0);
  });

  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('installs the program, commands, config, fail2ban files, dummy log and units, with their modes', async () => {
    const expected: Record<string, string> = {
      [`${LIB}/dist/agent/main.js`]: '755',
      [`${LIB}/dist/cli/client.bundle.cjs`]: '755',
      [`${LIB}/dist/src/reporting/status-text.js`]: '644',
      [`${LIB}/dist/broker/main.js`]: '755',
      [`${LIB}/dist/agent/sinks/nftables/nft-helper-main.js`]: '644',
      [`${LIB}/etc/fail2ban/jail.local`]: '644',
      [`${LIB}/THIRD-PARTY-LICENSES`]: '644',
      '/usr/local/share/doc/syncfail2ban/README.md': '644',
      '/usr/local/share/doc/syncfail2ban/LICENSE': '644',
      '/usr/local/share/doc/syncfail2ban/docs/install.md': '644',
      '/usr/local/bin/syncfail2ban': '755',
      '/usr/local/bin/syncfail2ban-client': '755',
      '/usr/local/bin/syncfail2ban-broker': '755',
      '/etc/syncfail2ban/config.cfg': '600',
      '/etc/syncfail2ban/syncfail2ban-client': '755',
      '/etc/fail2ban/action.d/syncfail2ban.py': '644',
      '/etc/fail2ban/action.d/sync-action.conf': '644',
      '/etc/fail2ban/filter.d/sync-filter.conf': '644',
      '/var/log/syncfail2ban-dummy.log': '640',
      '/etc/systemd/system/syncfail2ban.service': '644',
      '/etc/systemd/system/syncfail2ban-broker.service': '644',
      '/usr/local/share/man/man8/syncfail2ban.8': '644',
      '/usr/local/share/man/man8/syncfail2ban-client.8': '644',
      '/usr/local/share/man/man8/syncfail2ban-broker.8': '644',
      '/usr/local/share/man/man5/syncfail2ban.conf.5': '644',
      '/usr/local/share/bash-completion/completions/syncfail2ban': '644',
      '/usr/local/share/bash-completion/completions/syncfail2ban-client': '644',
      '/usr/local/share/bash-completion/completions/syncfail2ban-broker': '644',
    };
    for (const [path, wanted] of Object.entries(expected)) expect(await mode(join(root, path)), path).to.equal(wanted);
    expect(await mode(join(root, LIB))).to.equal('755');

    expect(await readFile(join(root, 'etc/syncfail2ban/config.cfg'), 'utf8')).to.equal(await readFile(join(ROOT, 'etc/config.cfg'), 'utf8'));
    expect(await readFile(join(root, 'usr/local/share/bash-completion/completions/syncfail2ban-client'), 'utf8')).to.equal(await readFile(join(ROOT, 'etc/bash-completion/syncfail2ban'), 'utf8'));
    for (const file of ['action.d/syncfail2ban.py', 'action.d/sync-action.conf', 'filter.d/sync-filter.conf']) {
      expect(await readFile(join(root, 'etc/fail2ban', file), 'utf8'), file).to.equal(await readFile(join(ROOT, 'etc/fail2ban', file), 'utf8'));
    }
    // The programs are bundled (scripts/bundle-programs.mjs): no package tree, no sources, maps or tests.
    const installed = await filesUnder(join(root, LIB));
    expect(installed.filter((file) => file.includes('node_modules') || file.includes('test/') || /\.(ts|map)$/.test(file))).to.deep.equal([]);
    expect(installed.length).to.be.below(60);

    const unit = await readFile(join(root, 'etc/systemd/system/syncfail2ban.service'), 'utf8');
    for (const line of [
      'ExecStart=/usr/local/bin/syncfail2ban --config /etc/syncfail2ban/config.cfg',
      'After=network-online.target fail2ban.service nftables.service',
      'Wants=network-online.target',
      'Restart=on-failure',
      'RestartPreventExitStatus=78',
      'ProtectSystem=strict',
      'ReadWritePaths=/var/lib/syncfail2ban /run/syncfail2ban',
      'NoNewPrivileges=yes',
    ]) {
      expect(unit.split('\n'), line).to.include(line);
    }
    expect(unit).not.to.match(/@[A-Z]+@/);
    const brokerUnit = await readFile(join(root, 'etc/systemd/system/syncfail2ban-broker.service'), 'utf8');
    expect(brokerUnit.split('\n')).to.include.members(['DynamicUser=yes', 'ExecStart=/usr/local/bin/syncfail2ban-broker --config %d/config.cfg']);
  });

  it('the installed client wrapper runs --help with node alone, from the installed tree', async () => {
    const wrapper = await readFile(join(root, 'etc/syncfail2ban/syncfail2ban-client'), 'utf8');
    const match = /^#!\/bin\/sh\n# [^\n]*\nexec (\/\S+) (\/\S+) "\$@"\n$/.exec(wrapper);
    expect(match, wrapper).not.to.equal(null);
    const [, node, script] = match!;
    expect(script).to.equal(`${LIB}/dist/cli/client.bundle.cjs`);
    expect((await run('sh', ['-n', join(root, 'etc/syncfail2ban/syncfail2ban-client')])).code).to.equal(0);
    // Under DESTDIR the wrapper's absolute path is not there yet: run what it runs, from the
    // staged tree, away from this checkout (no PATH, cwd elsewhere: only the installed packages).
    const help = await execFileAsync(node!, [join(root, script!), '--help'], { cwd: tmp, env: {} });
    expect(help.stdout).to.match(/^Usage: syncfail2ban-client /);
    // The agent's wrapper passes the node flags its memory figures depend on, and node takes them.
    const agentWrapper = await readFile(join(root, 'usr/local/bin/syncfail2ban'), 'utf8');
    const agentLine = /\nexec (\/\S+) (.*) (\/\S+) "\$@"\n$/.exec(agentWrapper);
    expect(agentLine, agentWrapper).not.to.equal(null);
    expect([...agentLine![2]!.split(' '), agentLine![3]]).to.deep.equal([...AGENT_SERVICE.slice(0, -1), `${LIB}/dist/agent/main.js`]);
    const agentHelp = await execFileAsync(node!, [...agentLine![2]!.split(' '), join(root, agentLine![3]!), '--help'], { cwd: tmp, env: {} });
    expect(agentHelp.stdout).to.match(/--check/);
  });

  it('the installed (bundled) programs work together: a ban published by the client reaches the agent, and the client reads its status and its view of the fleet', async () => {
    const port = await freePort();
    const run_ = join(tmp, 'bundled-run');
    await mkdir(run_, { recursive: true });
    const common = `mq_ip = 127.0.0.1\nmq_port = ${port}\ncontrol_socket = ${run_}/control.sock\nstate_dir = ${run_}/state\nfail2ban_socket = ${run_}/no-fail2ban.sock\n[jails]\nsshd = sshd-sync\n`;
    await writeFile(join(run_, 'agent.cfg'), `node_id = agent\n${common}`);
    await writeFile(join(run_, 'other.cfg'), `node_id = other\n${common}`);
    const agent = new RunningProcess(process.execPath, [join(root, LIB, 'dist/agent/main.js'), '--config', join(run_, 'agent.cfg')], { SYNCFAIL2BAN_LOG_FORMAT: 'json' });
    try {
      const client = join(root, LIB, 'dist/cli/client.bundle.cjs');
      const statusOf = async () => (JSON.parse((await run(process.execPath, [client, '--config', join(run_, 'agent.cfg'), 'status', '--json'])).stdout) as { status: AgentStatus }).status;
      await waitFor(() => statusOf().then(() => agent.alive), 'the installed agent to answer status');
      const published = await run(process.execPath, [client, '--config', join(run_, 'other.cfg'), '-a', 'sshd', 'banip', '203.0.113.9']);
      expect(published.code, published.stdout + published.stderr).to.equal(0);
      const status = await waitFor(async () => {
        const current = await statusOf();
        return measured(part(current, 'events'), 'accepted') === 1 ? current : undefined;
      }, 'the installed client to report the accepted ban');
      expect(status.nodeId).to.equal('agent');
      const fleet = await run(process.execPath, [client, '--config', join(run_, 'agent.cfg'), 'status', '--fleet']);
      expect(fleet.code, fleet.stderr).to.equal(0);
      expect(fleet.stdout).to.match(/^jail sshd: 1 address\(es\) held by 1 origin\(s\)$/m);
      expect(fleet.stdout).to.match(/^ {2}other +1 {2}\d+s ago$/m);
    } finally {
      await agent.stop();
    }
  });

  it('the installed agent keeps a fleet ban in its kernel set, nft started by its helper process from the installed tree', async () => {
    const ns = await NetNamespace.create();
    const run_ = join(tmp, 'bundled-nft');
    await mkdir(run_, { recursive: true });
    const common = `mq_ip = 127.0.0.1\nmq_port = 1883\nf2b_sync = false\nnft_sync = true\ncontrol_socket = ${run_}/control.sock\nstate_dir = ${run_}/state\nfail2ban_socket = ${run_}/no-fail2ban.sock\n[jails]\nsshd = sshd-sync\n`;
    await writeFile(join(run_, 'agent.cfg'), `node_id = agent\n${common}`);
    await writeFile(join(run_, 'other.cfg'), `node_id = other\n${common}`);
    const agent = new RunningProcess(...ns.wrap(process.execPath, [join(root, LIB, 'dist/agent/main.js'), '--config', join(run_, 'agent.cfg')]), { SYNCFAIL2BAN_LOG_FORMAT: 'json' });
    try {
      await waitFor(async () => (await ns.run('nft', ['list', 'set', 'inet', 'syncfail2ban', 'hosts_v4'])).code === 0 || !agent.alive, 'the installed agent to build its table');
      expect(agent.alive, agent.output).to.equal(true);
      const client = join(root, LIB, 'dist/cli/client.bundle.cjs');
      const published = await ns.run(process.execPath, [client, '--config', join(run_, 'other.cfg'), '-a', 'sshd', 'banip', '203.0.113.9']);
      expect(published.code, published.stdout + published.stderr).to.equal(0);
      expect(await waitForSetNames(ns, 'hosts_v4', 1)).to.deep.equal(['203.0.113.9']);
      expect(agent.output).not.to.include('nft helper process');
    } finally {
      await agent.stop();
      await ns.close();
    }
  });

  it('a second install keeps a changed config.cfg, and a changed sync-action.conf (ours goes beside it as .dist)', async () => {
    const config = join(root, 'etc/syncfail2ban/config.cfg');
    const action = join(root, 'etc/fail2ban/action.d/sync-action.conf');
    await writeFile(config, '# mine\nnode_id = mine\n');
    await appendFile(action, '# my change\n');
    const changedAction = await readFile(action, 'utf8');

    const second = await make('install', root);
    expect(second.code, second.stdout + second.stderr).to.equal(0);
    expect(await readFile(config, 'utf8')).to.equal('# mine\nnode_id = mine\n');
    expect(await readFile(action, 'utf8')).to.equal(changedAction);
    expect(await readFile(`${action}.dist`, 'utf8')).to.equal(await readFile(join(ROOT, 'etc/fail2ban/action.d/sync-action.conf'), 'utf8'));
    expect(second.stdout).to.include('kept your /etc/syncfail2ban/config.cfg');
    expect(second.stdout).to.include('ours is beside it as sync-action.conf.dist');
  });

  it('make uninstall removes everything but the config (and the action file the admin changed)', async () => {
    const result = await make('uninstall', root);
    expect(result.code, result.stdout + result.stderr).to.equal(0);
    expect(await filesUnder(root)).to.deep.equal(['etc/fail2ban/action.d/sync-action.conf', 'etc/syncfail2ban/config.cfg']);
    expect(result.stdout).to.include('kept /etc/syncfail2ban/config.cfg');
  });

  it("an upgrade from the original keeps its client as .orig and names its old program", async () => {
    const other = join(tmp, 'upgrade');
    await mkdir(join(other, 'etc/syncfail2ban'), { recursive: true });
    await writeFile(join(other, 'etc/syncfail2ban/syncfail2ban-client'), '#!/usr/bin/python3\n# the original client\n');
    await writeFile(join(other, 'etc/syncfail2ban/syncfail2ban'), '#!/usr/bin/python3\n# the original program\n');
    await mkdir(join(other, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
    await writeFile(join(other, 'etc/systemd/system/syncfail2ban.service'), ORIGINAL_UNIT);
    await symlink('/etc/systemd/system/syncfail2ban.service', join(other, 'etc/systemd/system/multi-user.target.wants/syncfail2ban.service'));
    await mkdir(join(other, 'etc/fail2ban'), { recursive: true });
    await writeFile(join(other, 'etc/fail2ban/jail.local'), jailLocal({ syncAction: true }));

    const install = await make('install', other);
    expect(install.code, install.stdout + install.stderr).to.equal(0);
    expect(await readFile(join(other, 'etc/syncfail2ban/syncfail2ban-client.orig'), 'utf8')).to.include('the original client');
    expect(await readFile(join(other, 'etc/syncfail2ban/syncfail2ban-client'), 'utf8')).to.include(`${LIB}/dist/cli/client.bundle.cjs`);
    expect(install.stdout).to.include("/etc/syncfail2ban/syncfail2ban is the original's program, no longer used");
    // Its unit (which runs that program) is kept aside, no longer enabled; ours takes its place.
    expect(install.stdout).to.include("moved the original's unit /etc/systemd/system/syncfail2ban.service");
    expect(await readFile(join(other, 'etc/systemd/system/syncfail2ban.service.orig'), 'utf8')).to.equal(ORIGINAL_UNIT);
    expect(await readFile(join(other, 'etc/systemd/system/syncfail2ban.service'), 'utf8')).to.include('ExecStart=/usr/local/bin/syncfail2ban --config');
    expect(await filesUnder(join(other, 'etc/systemd/system/multi-user.target.wants'))).to.deep.equal([]);
  });

  it('uninstall refuses while a jail runs sync-action; then removes what no jail uses; a second run removes nothing', async () => {
    const other = join(tmp, 'upgrade');
    const before = await filesUnder(other);
    const refused = await make('uninstall', other);
    expect(refused.code).not.to.equal(0);
    expect(refused.stderr).to.include('refusing to uninstall: a fail2ban jail still runs sync-action, which calls /etc/syncfail2ban/syncfail2ban-client on every ban (/etc/fail2ban/jail.local)');
    expect(refused.stderr).to.include('Nothing was removed.');
    expect(await filesUnder(other)).to.deep.equal(before);

    await writeFile(join(other, 'etc/fail2ban/jail.local'), jailLocal({ syncAction: false }));
    const uninstall = await make('uninstall', other);
    expect(uninstall.code, uninstall.stdout + uninstall.stderr).to.equal(0);
    expect(await filesUnder(other)).to.deep.equal([
      'etc/fail2ban/filter.d/sync-filter.conf',
      'etc/fail2ban/jail.local',
      'etc/syncfail2ban/config.cfg',
      'etc/syncfail2ban/syncfail2ban',
      'etc/syncfail2ban/syncfail2ban-client.orig',
      'etc/systemd/system/syncfail2ban.service.orig',
      'var/log/syncfail2ban-dummy.log',
    ]);
    expect(uninstall.stdout).to.include('removed /etc/fail2ban/action.d/sync-action.conf');
    expect(uninstall.stdout).to.include('kept /etc/fail2ban/filter.d/sync-filter.conf: a jail still uses sync-filter');
    expect(uninstall.stdout).to.include('a sync jail still uses it as its logpath');

    const again = await make('uninstall', other);
    expect(again.code, again.stdout + again.stderr).to.equal(0);
    expect(again.stdout).not.to.include('removed');
    expect(again.stdout).to.include('nothing to remove: syncfail2ban is not installed here');
  });

  it("install refuses next to the original installed with pip, whose uninstall would delete the new commands", async () => {
    const other = join(tmp, 'pip');
    await mkdir(join(other, 'usr/local/bin'), { recursive: true });
    const script = '#!/usr/bin/python3\n# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom syncfail2ban import main\nif __name__ == "__main__":\n    sys.exit(main())\n';
    await writeFile(join(other, 'usr/local/bin/syncfail2ban'), script, { mode: 0o755 });
    const install = await make('install', other);
    expect(install.code).not.to.equal(0);
    expect(install.stderr).to.include('the original syncfail2ban is installed with pip (/usr/local/bin/syncfail2ban is its Python script). Remove it first, in this order: systemctl disable --now syncfail2ban; pip uninstall syncfail2ban');
    expect(await filesUnder(other)).to.deep.equal(['usr/local/bin/syncfail2ban']);
  });
});
