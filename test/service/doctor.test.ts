import { expect } from 'chai';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFail2ban, type Fail2banServer, type StartFail2banOptions } from '../support/fail2ban-server.js';
import { BIN, ROOT } from '../support/paths.js';
import { freePort } from '../support/ports.js';
import { run, type RunResult } from '../support/run.js';

/** `syncfail2ban --check` with a config of these lines. */
async function check(dir: string, name: string, lines: string[]): Promise<RunResult> {
  const config = join(dir, `${name}.cfg`);
  await writeFile(config, [...lines, ''].join('\n'));
  return run(process.execPath, [BIN.agent, '--config', config, '--check']);
}

function configFor(server: Fail2banServer, jails: Record<string, string>, port: number): string[] {
  return [
    'node_id = doctor',
    'mq_ip = 127.0.0.1',
    `mq_port = ${port}`,
    `fail2ban_socket = ${server.socket}`,
    'connection_timeout = 5',
    '[jails]',
    ...Object.entries(jails).map(([primary, sync]) => `${primary} = ${sync}`),
  ];
}

describe('syncfail2ban --check against real fail2ban servers', function () {
  this.timeout(120_000);
  let dir: string;
  let client: string;
  let port: number;
  const servers: Fail2banServer[] = [];

  async function fail2ban(options: Omit<StartFail2banOptions, 'actionFiles' | 'pythonActions'>): Promise<Fail2banServer> {
    const server = await startFail2ban({
      ...options,
      // The shipped action files, as an admin installs them.
      actionFiles: { 'sync-action': await readFile(join(ROOT, 'etc/fail2ban/action.d/sync-action.conf'), 'utf8') },
      pythonActions: { syncfail2ban: await readFile(join(ROOT, 'etc/fail2ban/action.d/syncfail2ban.py'), 'utf8') },
    });
    servers.push(server);
    return server;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-doctor-'));
    port = await freePort();
    client = join(dir, 'syncfail2ban-client');
    await writeFile(client, '#!/bin/sh\nexit 0\n');
    await chmod(client, 0o755);
  });

  after(async () => {
    await Promise.all(servers.map((server) => server.stop()));
    await rm(dir, { recursive: true, force: true });
  });

  it('a good setup: every check passes and it exits 0', async () => {
    const server = await fail2ban({
      name: 'good',
      jails: [
        { name: 'sshd', kind: 'primary' },
        { name: 'sshd-sync', kind: 'sync' },
      ],
      primaryAction: `record\n         sync-action[client="${client}"]`,
    });
    const result = await check(dir, 'good', configFor(server, { sshd: 'sshd-sync' }, port));
    expect(result.stdout.trim().split('\n')).to.deep.equal([
      `ok    config: ${join(dir, 'good.cfg')} is valid (node id doctor, mesh, 1 jail pair(s))`,
      `ok    mq_ip:mq_port mqtt://127.0.0.1:${port}: is free for the embedded broker`,
      `ok    fail2ban: answers on ${server.socket}`,
      `ok    primary jail sshd: runs and publishes its bans through ${client}`,
      'ok    sync jail sshd-sync: runs, keeps bans until unbanned (bantime = -1) and publishes nothing',
      'all good',
    ]);
    expect(result.code).to.equal(0);
  });

  it('a primary jail without the sync action, a sync jail whose bans expire, and jails that do not run: each problem with its fix, exit 1', async () => {
    const server = await fail2ban({
      name: 'broken1',
      jails: [
        { name: 'sshd', kind: 'primary' },
        { name: 'sshd-sync', kind: 'sync', bantime: 600 },
      ],
      primaryAction: 'record',
    });
    const result = await check(dir, 'broken1', configFor(server, { sshd: 'sshd-sync', ftp: 'ftp-sync' }, port));
    expect(result.code).to.equal(1);
    const out = result.stdout;
    expect(out).to.include('FAIL  primary jail sshd: has no sync action, so its bans are not published to the other servers\n      fix: add syncfail2ban.py (or the shell action sync-action) to its action list');
    expect(out).to.include('FAIL  sync jail sshd-sync: has bantime = 600, so bans from other servers expire here on their own');
    expect(out).to.include('      fix: set "bantime = -1" in [sshd-sync]');
    expect(out).to.include('FAIL  primary jail ftp: is not running in fail2ban, so nothing of it is published\n      fix: enable [ftp]');
    expect(out).to.include('FAIL  sync jail ftp-sync: is not running in fail2ban');
    expect(out).to.match(/4 problem\(s\) found; fix them and run syncfail2ban --check again\n$/);
  });

  it('a misspelt jail name in [jails] names the running jail meant ("did you mean")', async () => {
    const server = await fail2ban({
      name: 'typo',
      jails: [
        { name: 'sshd', kind: 'primary' },
        { name: 'sshd-sync', kind: 'sync' },
      ],
      primaryAction: `record\n         sync-action[client="${client}"]`,
    });
    const result = await check(dir, 'typo', configFor(server, { sshdd: 'sshd-snyc' }, port));
    expect(result.code).to.equal(1);
    expect(result.stdout).to.include('FAIL  primary jail sshdd: is not running in fail2ban, so nothing of it is published: did you mean sshd?\n      fix: correct "sshdd = sshd-snyc" in [jails] to "sshd = sshd-snyc"');
    expect(result.stdout).to.include('FAIL  sync jail sshd-snyc: is not running in fail2ban, so bans of sshdd from other servers cannot be applied here: did you mean sshd-sync?\n      fix: correct "sshdd = sshd-snyc" in [jails] to "sshdd = sshd-sync"');
  });

  it('a sync jail that runs the sync action (a loop) and a sync action whose client is missing: exit 1', async () => {
    const server = await fail2ban({
      name: 'broken2',
      jails: [
        { name: 'sshd', kind: 'primary' },
        // A "sync" jail set up like a primary one: it would publish every ban applied to it.
        { name: 'sshd-sync', kind: 'primary', bantime: -1 },
      ],
      primaryAction: 'sync-action[client="/nonexistent/syncfail2ban-client"]',
    });
    const result = await check(dir, 'broken2', configFor(server, { sshd: 'sshd-sync' }, port));
    expect(result.code).to.equal(1);
    expect(result.stdout).to.include(
      'FAIL  primary jail sshd: its sync action runs "/nonexistent/syncfail2ban-client", which does not exist or is not executable, so its bans are not published\n      fix: run "make install"',
    );
    expect(result.stdout).to.include('FAIL  sync jail sshd-sync: runs the sync action (sync-action): every ban applied to it would be published again, a loop between servers');
    expect(result.stdout).to.include('      fix: remove sync-action from the action list of [sshd-sync]');
  });

  it('fail2ban not reachable, and an invalid config: one line each with the fix, exit 1', async () => {
    const unreachable = await check(dir, 'nosocket', ['mq_ip = 127.0.0.1', `fail2ban_socket = ${join(dir, 'absent.sock')}`, '[jails]', 'sshd = sshd-sync']);
    expect(unreachable.code).to.equal(1);
    expect(unreachable.stdout).to.include(`FAIL  fail2ban: cannot connect to fail2ban: socket ${join(dir, 'absent.sock')} does not exist (ENOENT).`);
    expect(unreachable.stdout).to.include('      fix: start fail2ban ("systemctl start fail2ban")');

    const missingCa = await check(dir, 'noca', ['mq_ip = 127.0.0.1', `fail2ban_socket = ${join(dir, 'absent.sock')}`, `mqtt_ca_file = ${join(dir, 'absent-ca.pem')}`]);
    expect(missingCa.code).to.equal(1);
    expect(missingCa.stdout).to.match(/^FAIL {2}config: \S+noca\S*: mqtt_ca_file: cannot read \S+absent-ca\.pem \(ENOENT\); fix: correct the path/m);

    const invalid = await check(dir, 'invalid', ['mq_port = 99999']);
    expect(invalid.code).to.equal(1);
    expect(invalid.stdout).to.include(`FAIL  config: ${join(dir, 'invalid.cfg')}: mq_port: "99999" is not a whole number from 1 to 65535; fix: set mq_port to such a number (default 18862)`);
  });

  it('an unknown key or section fails, naming the closest known one', async () => {
    const server = servers[0]!;
    const result = await check(dir, 'typo', [...configFor(server, { sshd: 'sshd-sync' }, port).slice(0, 5), 'sync_server = 127.0.0.1', '[jail]', 'sshd = sshd-sync']);
    expect(result.stdout).to.include('FAIL  config: unknown key sync_server is ignored: did you mean sync_servers?\n      fix: rename it to sync_servers\n');
    expect(result.stdout).to.include('FAIL  config: unknown section [jail] is ignored: did you mean [jails]?\n      fix: rename it to [jails]\n');
    expect(result.stdout).to.include('FAIL  [jails]: is empty while f2b_sync is on: this host would neither publish nor apply any ban');
    expect(result.stdout).to.match(/3 problem\(s\) found; fix them/);
    expect(result.code).to.equal(1);
  });

  describe('the Python action (syncfail2ban.py)', () => {
    /** A server whose Python actions read `config`: written before fail2ban starts, since they read it then. */
    async function pythonSetup(name: string, jails: StartFail2banOptions['jails'], action: string): Promise<{ server: Fail2banServer; lines: () => string[] }> {
      const config = join(dir, `${name}.cfg`);
      let lines: string[] = [];
      const server = await fail2ban({
        name,
        jails,
        primaryAction: action.replaceAll('@CONFIG@', config),
        beforeStart: async (started) => {
          lines = [...configFor(started, { sshd: 'sshd-sync' }, port), ''];
          lines.splice(5, 0, `control_socket = ${join(dir, `${name}-control.sock`)}`);
          await writeFile(config, lines.join('\n'));
        },
      });
      return { server, lines: () => lines.slice(0, -1) };
    }

    it('recognises it on a primary jail: ok, with the socket it hands bans to', async () => {
      const { lines } = await pythonSetup('py-good', [{ name: 'sshd', kind: 'primary' }, { name: 'sshd-sync', kind: 'sync' }], 'record\n         syncfail2ban.py[config=@CONFIG@]');
      const result = await check(dir, 'py-good', lines());
      expect(result.stdout).to.include(`ok    primary jail sshd: runs and hands its bans to the agent on ${join(dir, 'action.sock')} (Python action syncfail2ban, no process per ban)\n`);
      expect(result.stdout).to.match(/all good/);
      expect(result.code).to.equal(0);
    });

    it('a jail that runs both the Python and the shell action: every ban published twice, exit 1', async () => {
      const { lines } = await pythonSetup('py-both', [{ name: 'sshd', kind: 'primary' }, { name: 'sshd-sync', kind: 'sync' }], `syncfail2ban.py[config=@CONFIG@]\n         sync-action[client="${client}"]`);
      const result = await check(dir, 'py-both', lines());
      expect(result.stdout).to.include('FAIL  primary jail sshd: runs both the Python action (syncfail2ban) and the shell action (sync-action): every ban is published twice, and the shell action still costs fail2ban a process per ban\n      fix: remove sync-action from its action list');
      expect(result.code).to.equal(1);
    });

    it("the loop guard: on a sync jail it refuses to start, fail2ban's log names the jail and the fix, and --check reports it", async () => {
      const { server, lines } = await pythonSetup('py-loop', [{ name: 'sshd', kind: 'primary' }, { name: 'sshd-sync', kind: 'primary', bantime: -1 }], 'syncfail2ban.py[config=@CONFIG@]');
      const log = await readFile(server.logFile, 'utf8');
      expect(log).to.include(`syncfail2ban: the action of jail sshd-sync does not publish anything: sshd-sync is a sync jail in ${join(dir, 'py-loop.cfg')} ([jails] sshd = sshd-sync): publishing its bans would send every ban applied here back to the fleet, a loop; fix: remove syncfail2ban.py from the action list of [sshd-sync] in jail.local, then run "fail2ban-client reload"`);
      expect(log.match(/does not publish anything/g)).to.have.length(1);
      const result = await check(dir, 'py-loop', lines());
      expect(result.stdout).to.include("FAIL  sync jail sshd-sync: runs the Python sync action (syncfail2ban): every ban applied to it would be published again, a loop between servers; the action refuses to, and says so in fail2ban's log\n      fix: remove syncfail2ban.py from the action list of [sshd-sync]");
      expect(result.stdout).to.include('ok    primary jail sshd: runs and hands its bans to the agent');
      expect(result.code).to.equal(1);
    });

    it('an action that hands bans to another socket than the agent listens on: exit 1', async () => {
      const { lines } = await pythonSetup('py-socket', [{ name: 'sshd', kind: 'primary' }, { name: 'sshd-sync', kind: 'sync' }], `syncfail2ban.py[config=@CONFIG@, socket=${join(dir, 'elsewhere.sock')}]`);
      const result = await check(dir, 'py-socket', lines());
      expect(result.stdout).to.include(`FAIL  primary jail sshd: its Python action (syncfail2ban) hands its bans to ${join(dir, 'elsewhere.sock')}, but the agent takes them on ${join(dir, 'action.sock')}, so they are not published`);
      expect(result.code).to.equal(1);
    });
  });
});
