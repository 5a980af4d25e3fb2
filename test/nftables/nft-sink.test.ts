import { expect } from 'chai';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addressBlock, banIn, snapshotsOf } from '../support/fleet-helpers.js';
import { NetNamespace } from '../support/netns.js';
import { setElements, setNames, waitForSetNames } from '../support/nft-sets.js';
import { AGENT_SERVICE, BIN } from '../support/paths.js';
import { freePort } from '../support/ports.js';
import { RunningProcess } from '../support/process.js';
import { SimHost } from '../support/sim-host.js';
import { measured, measuredBy, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const A = '127.0.0.2';
const B = '127.0.0.3';

/** Host A publishes (its fail2ban runs the sync action); host B applies, with nft_sync and `extra` config lines. */
async function fleet(ns: NetNamespace, b: { fail2ban?: boolean; extra?: string[] } = {}, aExtra: string[] = []): Promise<[SimHost, SimHost]> {
  const port = await freePort();
  const a = await SimHost.start({ name: 'nft-a', ip: A, port, peers: [B], netns: ns, extra: aExtra });
  const host = await SimHost.start({ name: 'nft-b', ip: B, port, peers: [A], netns: ns, fail2ban: b.fail2ban ?? true, extra: ['nft_sync = true', ...(b.extra ?? [])] });
  return [a, host];
}

async function start(hosts: SimHost[]): Promise<void> {
  await Promise.all(hosts.map((host) => host.startAgent()));
  await Promise.all(hosts.map((host) => host.waitSubscribed(2)));
}

/** Runs node with a script inside a namespace; resolves with what it printed. */
async function nodeIn(ns: NetNamespace, script: string): Promise<string> {
  return (await ns.must(process.execPath, ['-e', script])).trim();
}

describe('the nftables sink in agents (real nft in a network namespace)', function () {
  this.timeout(120_000);

  describe('beside the sync jails', () => {
    let ns: NetNamespace;
    let a: SimHost;
    let b: SimHost;

    before(async () => {
      ns = await NetNamespace.create();
      [a, b] = await fleet(ns, { extra: ['nft_reconcile_interval = 1', 'metrics_port = 9464'] });
      await start([a, b]);
    });
    after(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
      await ns?.close();
    });

    it('puts a fleet ban into the set and the sync jail alike, and its unban takes it out of both', async () => {
      await a.fail2ban.ban('sshd', '203.0.113.7');
      await waitFor(async () => (await setNames(ns, 'hosts_v4')).includes('203.0.113.7'), "the ban in B's set");
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.7'), "the ban in B's sync jail");
      await a.fail2ban.unban('sshd', '203.0.113.7');
      await waitFor(async () => !(await setNames(ns, 'hosts_v4')).includes('203.0.113.7'), "the ban out of B's set");
      await waitFor(async () => !(await b.banned('sshd-sync')).includes('203.0.113.7'), "the ban out of B's sync jail");
      expect(part(await b.agentStatus(), 'sink', 'nftables').problems).to.deep.equal([]);
    });

    it("gives a ban with a bantime its end as the element's timeout, moves it with a longer re-ban, and takes the element out at the end", async () => {
      expect((await a.client(['-a', 'web', 'ban', '203.0.113.71', '--bantime=3600'])).code).to.equal(0);
      await waitFor(async () => (await setElements(ns, 'hosts_v4')).get('203.0.113.71') !== undefined, 'the element with its timeout');
      expect((await setElements(ns, 'hosts_v4')).get('203.0.113.71')).to.be.within(3_500, 3_600);
      expect((await a.client(['-a', 'web', 'ban', '203.0.113.71', '--bantime=7200'])).code).to.equal(0);
      await waitFor(async () => ((await setElements(ns, 'hosts_v4')).get('203.0.113.71') ?? 0) > 3_600, 'the element retimed to the later end');
      expect((await setElements(ns, 'hosts_v4')).get('203.0.113.71')).to.be.within(7_100, 7_200);
      expect((await a.client(['-a', 'web', 'unban', '203.0.113.71'])).code).to.equal(0);

      expect((await a.client(['-a', 'web', 'ban', '203.0.113.72', '--bantime=3'])).code).to.equal(0);
      await waitFor(async () => (await setNames(ns, 'hosts_v4')).includes('203.0.113.72'), 'the short ban in the set');
      await waitFor(async () => !(await setNames(ns, 'hosts_v4')).includes('203.0.113.72') && !(await setNames(ns, 'hosts_v4')).includes('203.0.113.71'), 'both out of the set', 15_000);
      expect(measuredBy(part(await b.agentStatus(), 'fleet'), 'released')).to.include({ expiry: 1 });
    });

    it('takes networks and IPv6 addresses from the fleet', async () => {
      for (const address of ['10.20.0.0/16', '2001:db8::7', '2001:db8:5::/48']) expect((await a.client(['-a', 'web', 'ban', address])).code).to.equal(0);
      await waitFor(async () => (await setNames(ns, 'nets_v4')).includes('10.20.0.0/16'), 'the network in nets_v4');
      await waitFor(async () => (await setNames(ns, 'hosts_v6')).includes('2001:db8::7'), 'the address in hosts_v6');
      await waitFor(async () => (await setNames(ns, 'nets_v6')).includes('2001:db8:5::/48'), 'the network in nets_v6');
      for (const address of ['10.20.0.0/16', '2001:db8::7', '2001:db8:5::/48']) expect((await a.client(['-a', 'web', 'unban', address])).code).to.equal(0);
      await waitFor(async () => (await setNames(ns, 'nets_v4')).length + (await setNames(ns, 'hosts_v6')).length + (await setNames(ns, 'nets_v6')).length === 0, 'the sets empty again');
    });

    it('repairs a flushed set, and rebuilds the table after "nft flush ruleset"', async () => {
      await a.fail2ban.ban('sshd', '198.51.100.4');
      await waitFor(async () => (await setNames(ns, 'hosts_v4')).includes('198.51.100.4'), "the ban in B's set");
      await ns.must('nft', ['flush', 'set', 'inet', 'syncfail2ban', 'hosts_v4']);
      await waitFor(async () => (await setNames(ns, 'hosts_v4')).includes('198.51.100.4'), 'the flushed set repaired');
      await ns.must('nft', ['flush', 'ruleset']);
      await waitFor(async () => (await ns.run('nft', ['list', 'table', 'inet', 'syncfail2ban'])).code === 0 && (await setNames(ns, 'hosts_v4')).includes('198.51.100.4'), 'the table rebuilt and refilled', 30_000);
      const sink = part(await b.agentStatus(), 'sink', 'nftables');
      expect(sink.problems).to.deep.equal([]);
      expect(measuredBy(sink, 'set_elements')).to.include({ hosts_v4: 1 });
    });

    it('drops the packets of a banned address: a TCP connect over a veth pair fails, and the rule counts them', async () => {
      const peer = await ns.linkPeer({ here: ['192.0.2.1/24'], there: ['192.0.2.2/24'] });
      const server = new RunningProcess(...ns.wrap(process.execPath, ['-e', "require('net').createServer((s) => s.end('hello\\n')).listen(8022, '192.0.2.1', () => console.log('listening'))"]));
      try {
        await server.waitForOutput(/listening/, 'the TCP server in B\'s namespace');
        const connect = "const s = require('net').connect({ host: '192.0.2.1', port: 8022, timeout: 1500 }); s.on('data', (d) => { console.log('connected: ' + d); s.destroy(); }); s.on('timeout', () => { console.log('timed out'); s.destroy(); }); s.on('error', (e) => console.log(e.code));";
        expect(await nodeIn(peer, connect)).to.equal('connected: hello');
        await a.client(['-a', 'sshd', 'ban', '192.0.2.2']);
        await waitFor(async () => (await setNames(ns, 'hosts_v4')).includes('192.0.2.2'), 'the peer banned in B\'s set');
        expect(await nodeIn(peer, connect)).to.equal('timed out');
        await waitFor(async () => (measuredBy(part(await b.agentStatus(), 'sink', 'nftables'), 'blocked_packets').input ?? 0) > 0, 'the dropped packets counted in status');
        await a.client(['-a', 'sshd', 'unban', '192.0.2.2']);
        await waitFor(async () => !(await setNames(ns, 'hosts_v4')).includes('192.0.2.2'), 'the peer out of B\'s set');
        expect(await nodeIn(peer, connect)).to.equal('connected: hello');
      } finally {
        await server.stop();
        await peer.close();
      }
    });

    it('reports the sink in /metrics', async () => {
      const metrics = await nodeIn(ns, `fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then(console.log)`);
      expect(metrics).to.match(/^syncfail2ban_sink_changes_applied_total\{sink="nftables"\} [1-9]/m);
      expect(metrics).to.match(/^syncfail2ban_sink_set_elements\{sink="nftables",set="hosts_v4"\} \d+/m);
      expect(metrics).to.match(/^syncfail2ban_sink_problems\{sink="nftables"\} 0/m);
      expect(metrics).to.match(/^syncfail2ban_sink_blocked_packets_total\{sink="nftables",hook="input"\} \d+/m);
    });

    it('--check says nft can build the table and that it exists; --remove-nft-table is refused while the agent runs', async () => {
      const check = await ns.run(process.execPath, [BIN.agent, '--check', '--config', b.configPath]);
      expect(check.stdout).to.match(/ok {4}nftables \(table inet syncfail2ban\): exists and nft can change it; its chains hook input and drop/);
      const remove = await ns.run(process.execPath, [BIN.agent, '--remove-nft-table', '--config', b.configPath]);
      expect(remove.code).to.equal(1);
      expect(remove.stdout).to.include('stop it first');
      expect((await ns.run('nft', ['list', 'table', 'inet', 'syncfail2ban'])).code).to.equal(0);
    });

    it('leaves the table when it stops, and --remove-nft-table then takes it away', async () => {
      await a.fail2ban.ban('sshd', '198.51.100.9');
      await waitFor(async () => (await setNames(ns, 'hosts_v4')).includes('198.51.100.9'), "the ban in B's set");
      const agent = b.requireAgent();
      const code = await agent.stop();
      expect(code, `B's agent ended with ${agent.child.signalCode ?? `exit code ${code}`}: ${agent.output.slice(-3000)}`).to.equal(0);
      expect(await setNames(ns, 'hosts_v4')).to.include('198.51.100.9');
      const remove = await ns.run(process.execPath, [BIN.agent, '--remove-nft-table', '--config', b.configPath]);
      expect(remove.code, remove.stdout + remove.stderr).to.equal(0);
      expect(remove.stdout).to.include('removed table inet syncfail2ban');
      expect((await ns.run('nft', ['list', 'table', 'inet', 'syncfail2ban'])).code).to.equal(1);
      const again = await ns.run(process.execPath, [BIN.agent, '--remove-nft-table', '--config', b.configPath]);
      expect(again.stdout).to.include('does not exist: nothing to remove');
      const check = await ns.run(process.execPath, [BIN.agent, '--check', '--config', b.configPath]);
      expect(check.stdout).to.include('nft can build it, but it does not exist');
    });
  });

  it('instead of the sync jails: a 100,000-address snapshot arrives complete in the set', async function () {
    // Most of it is the origin's fail2ban taking the 100,000 bans in and listing them for -f.
    this.timeout(300_000);
    const ns = await NetNamespace.create();
    // Reading 100,000 bans with their times out of fail2ban takes -f longer than the 5 s the test hosts allow by default.
    const [a, b] = await fleet(ns, { fail2ban: false }, ['connection_timeout = 60']);
    try {
      await start([a, b]);
      const addresses = [...addressBlock(60, 65_536), ...addressBlock(61, 100_000 - 65_536)];
      await banIn(a, 'web', addresses);
      const full = await a.client(['-f', 'web']);
      expect(full.code, full.stderr).to.equal(0);
      await waitFor(
        async () => (await snapshotsOf(b)).some((s) => s.origin === 'nft-a' && s.complete) && measured(part(await b.agentStatus(), 'sink', 'nftables'), 'backlog') === 0,
        "the snapshot applied on B",
        240_000,
        500,
      );
      const held = new Set(await waitForSetNames(ns, 'hosts_v4', 100_000));
      expect(addresses.filter((address) => !held.has(address))).to.deep.equal([]);
      expect(part(await b.agentStatus(), 'sink', 'nftables').problems).to.deep.equal([]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await ns.close();
    }
  });

  it('in a dry run, logs what it would write and changes nothing in nftables', async () => {
    const ns = await NetNamespace.create();
    const [a, b] = await fleet(ns, { fail2ban: false, extra: ['dry_run = true'] });
    try {
      await start([a, b]);
      await a.client(['-a', 'sshd', 'ban', '203.0.113.44']);
      await b.requireAgent().waitForOutput(/dry run: would apply to nftables syncfail2ban: 1 ban\(s\) \(203\.0\.113\.44\)/, 'the dry-run line');
      expect((await ns.must('nft', ['list', 'ruleset'])).trim()).to.equal('');
      expect(part(await b.agentStatus(), 'sink', 'nftables').details).to.include({ dry_run: true, table: 'inet syncfail2ban (absent)' });
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await ns.close();
    }
  });

  describe('status says why nftables cannot be used, and the fix', () => {
    let ns: NetNamespace;
    let dir: string;
    let b: SimHost;

    beforeEach(async () => {
      ns = await NetNamespace.create();
      dir = await mkdtemp(join(tmpdir(), 'sf2b-nft-'));
      b = await SimHost.start({ name: 'nft-lone', ip: B, port: await freePort(), netns: ns, fail2ban: false, extra: ['nft_sync = true'] });
    });
    afterEach(async () => {
      await b.stop();
      await ns.close();
      await rm(dir, { recursive: true, force: true });
    });

    /** The sink's first problem, once it has one. */
    const firstProblem = () =>
      waitFor(async () => part(await b.agentStatus(), 'sink', 'nftables').problems[0], 'a problem of the nftables sink in status');

    it('nft not installed', async () => {
      // A PATH without nft (the agent itself is started by its full path).
      b.agent = new RunningProcess(...ns.wrap(process.execPath, [...AGENT_SERVICE, '--config', b.configPath]), { PATH: dir });
      await b.waitSubscribed(1);
      const problem = await firstProblem();
      expect(problem.what).to.include('nft is not installed');
      expect(problem.fix).to.include('apt-get install nftables');
      expect((await b.status()).healthy).to.equal(false);
    });

    it('a kernel without nf_tables (a stand-in nft that answers as nft does on such a kernel)', async () => {
      await writeFile(join(dir, 'nft'), "#!/bin/sh\necho 'netlink: Error: cache initialization failed: Protocol not supported' >&2\nexit 1\n");
      await chmod(join(dir, 'nft'), 0o755);
      b.agent = new RunningProcess(...ns.wrap(process.execPath, [...AGENT_SERVICE, '--config', b.configPath]), { PATH: dir });
      await b.waitSubscribed(1);
      const problem = await firstProblem();
      expect(problem.what).to.include('the kernel does not provide nf_tables');
      expect(problem.fix).to.include('modprobe nf_tables');
    });

    it('not permitted (no CAP_NET_ADMIN, as in a container without it)', async () => {
      b.agent = new RunningProcess(...ns.wrap('setpriv', ['--inh-caps=-net_admin', '--bounding-set=-net_admin', process.execPath, ...AGENT_SERVICE, '--config', b.configPath]));
      await b.waitSubscribed(1);
      const problem = await firstProblem();
      expect(problem.what).to.include('not permitted');
      expect(problem.fix).to.include('CAP_NET_ADMIN');
      expect((await ns.must('nft', ['list', 'ruleset'])).trim()).to.equal('');
    });
  });
});
