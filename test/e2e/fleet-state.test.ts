import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FleetView } from '../../src/control-protocol.js';
import { encodeSnapshot } from '../../src/snapshot.js';
import { barrier } from '../support/barrier.js';
import { addressBlock, holdingsOf, snapshotsOf } from '../support/fleet-helpers.js';
import { measured, measuredBy, part } from '../support/status.js';
import { freePortOn } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';

const IPS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];

describe('fleet state: who holds a ban, snapshots that heal (3 hosts, mesh, real fail2ban)', function () {
  this.timeout(180_000);
  let hosts: SimHost[];
  let port: number;
  let a: SimHost;
  let b: SimHost;
  let c: SimHost;
  const brokerA = () => ({ host: IPS[0]!, port });

  before(async () => {
    port = await freePortOn(IPS);
    hosts = await Promise.all(
      IPS.map((ip, index) => SimHost.start({ name: `host-${'abc'[index]}`, ip, port, peers: IPS.filter((peer) => peer !== ip), extra: ['snapshot_timeout = 3'] })),
    );
    [a, b, c] = hosts as [SimHost, SimHost, SimHost];
    await Promise.all(hosts.map((host) => host.startAgent()));
    await Promise.all(hosts.map((host) => host.waitSubscribed(3)));
  });

  after(async () => {
    await Promise.all((hosts ?? []).map((host) => host.stop()));
  });

  it("A and C ban an address, A's ban expires: B keeps it until C's expires too", async () => {
    await a.fail2ban.ban('sshd', '203.0.113.21');
    await c.fail2ban.ban('sshd', '203.0.113.21');
    await waitFor(async () => (await holdingsOf(b, 'host-c')) === 1, "C's holding on B");
    await a.fail2ban.unban('sshd', '203.0.113.21');
    await barrier(brokerA(), hosts);
    expect(await b.banned('sshd-sync'), "still held by C").to.include('203.0.113.21');
    expect(await a.banned('sshd-sync'), 'A has it from C').to.include('203.0.113.21');
    await c.fail2ban.unban('sshd', '203.0.113.21');
    for (const host of [a, b]) await waitFor(async () => !(await host.banned('sshd-sync')).includes('203.0.113.21'), `the last unban on ${host.name}`);
  });

  it('status --fleet on B: what each origin holds, when it was last heard from, the addresses both hold (text and --json)', async () => {
    await a.fail2ban.ban('sshd', '203.0.113.41');
    await c.fail2ban.ban('sshd', '203.0.113.41');
    await c.fail2ban.ban('sshd', '203.0.113.42');
    await waitFor(async () => ((await holdingsOf(b, 'host-c')) ?? 0) >= 2 && ((await holdingsOf(b, 'host-a')) ?? 0) >= 1, "A's and C's holdings on B");
    const json = await b.client(['status', '--fleet', '--json']);
    expect(json.code, json.stderr).to.equal(0);
    const view = JSON.parse(json.stdout) as FleetView;
    expect(view.nodeId).to.equal('host-b');
    const sshd = view.jails.find((jail) => jail.jail === 'sshd')!;
    expect(sshd.origins.find((entry) => entry.origin === 'host-c')!.holdings).to.be.at.least(2);
    expect(sshd.mostHeld.find((entry) => entry.address === '203.0.113.41')?.origins).to.deep.equal(['host-a', 'host-c']);
    for (const origin of ['host-a', 'host-c']) expect(Date.now() - Date.parse(view.lastEvents[origin]!)).to.be.below(120_000);
    const text = await b.client(['status', '--fleet']);
    expect(text.code, text.stderr).to.equal(0);
    expect(text.stdout).to.match(/^ {2}host-c +\d+ {2}\d+s ago$/m);
    expect(text.stdout).to.match(/^ {4}203\.0\.113\.41 {2}2: host-a, host-c$/m);
    for (const host of [a, c]) await host.fail2ban.unban('sshd', '203.0.113.41');
    await c.fail2ban.unban('sshd', '203.0.113.42');
    await waitFor(async () => !(await b.banned('sshd-sync')).some((ip) => ip === '203.0.113.41' || ip === '203.0.113.42'), 'the unbans on B');
  });

  it('an unban from an origin that holds nothing is counted and changes nothing; an anonymous manual unban clears it everywhere', async () => {
    await a.fail2ban.ban('sshd', '203.0.113.22');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.22'), 'the ban on B');
    const forged = await run('mosquitto_pub', ['-h', IPS[1]!, '-p', String(port), '-q', '1', '-t', 'f2b/sshd/unban', '-m', JSON.stringify({ ip: '203.0.113.22', origin: 'host-c' })]);
    expect(forged.code, forged.stderr).to.equal(0);
    await barrier({ host: IPS[1]!, port }, hosts);
    expect(await b.banned('sshd-sync')).to.include('203.0.113.22');
    expect(measured(part(await b.agentStatus(), 'fleet'), 'unbans_without_holding')).to.be.at.least(1);

    const manual = await run('mosquitto_pub', ['-h', IPS[2]!, '-p', String(port), '-q', '1', '-t', 'f2b/sshd/unban', '-m', '203.0.113.22']);
    expect(manual.code, manual.stderr).to.equal(0);
    for (const host of [b, c]) await waitFor(async () => !(await host.banned('sshd-sync')).includes('203.0.113.22'), `the manual unban on ${host.name}`);
  });

  it("a host offline while an unban went out heals with the origin's -f (a complete snapshot releases it)", async () => {
    await a.fail2ban.ban('sshd', '203.0.113.23');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.23'), 'the ban on B');
    await b.requireAgent().stop();
    await a.fail2ban.unban('sshd', '203.0.113.23');
    await waitFor(async () => !(await c.banned('sshd-sync')).includes('203.0.113.23'), 'the unban on C');
    await b.startAgent();
    await b.waitSubscribed(3);
    await a.waitSubscribed(3);
    expect(await b.banned('sshd-sync'), 'missed the unban').to.include('203.0.113.23');

    const result = await a.client(['-f', 'sshd']);
    expect(result.code, result.stderr).to.equal(0);
    await waitFor(async () => !(await b.banned('sshd-sync')).includes('203.0.113.23'), 'healed on B');
    const snapshot = (await snapshotsOf(b)).find((s) => s.origin === 'host-a' && s.jail === 'sshd');
    expect(snapshot).to.include({ complete: true });
    expect(snapshot!.released).to.be.at.least(1);
  });

  it('a restart reconciles the sync jail: adds what it lacks, removes what the store released, leaves alone what the agent never put there', async () => {
    await a.fail2ban.ban('sshd', '203.0.113.26'); // held: stays
    await a.fail2ban.ban('sshd', '203.0.113.27'); // released below
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.27'), 'both bans on B');
    await a.fail2ban.unban('sshd', '203.0.113.27');
    await waitFor(async () => !(await b.banned('sshd-sync')).includes('203.0.113.27'), 'the unban on B');
    await b.requireAgent().stop();
    // While the agent is down, the sync jail drifts: a held ban lost, a released one back, an admin's own entry.
    await b.fail2ban.unban('sshd-sync', '203.0.113.26');
    await b.fail2ban.ban('sshd-sync', '203.0.113.27');
    await b.fail2ban.ban('sshd-sync', '198.51.100.28');
    await b.startAgent();
    await b.waitSubscribed(3);
    await waitFor(async () => {
      const banned = await b.banned('sshd-sync');
      return banned.includes('203.0.113.26') && !banned.includes('203.0.113.27');
    }, "B's sync jail reconciled");
    expect(await b.banned('sshd-sync'), 'never the agent\'s: left alone').to.include('198.51.100.28');
    const sink = part(await b.agentStatus(), 'sink', 'fail2ban');
    expect(sink.details).to.include({ last_reconcile_ok: true });
    expect(measuredBy(sink, 'reconcile_added')['sshd-sync']).to.be.at.least(1);
    expect(measuredBy(sink, 'reconcile_removed')['sshd-sync']).to.be.at.least(1);
  });

  it('a snapshot with a lost part only adds, and B says so in status and the log', async () => {
    await run('mosquitto_pub', ['-h', IPS[0]!, '-p', String(port), '-q', '1', '-t', 'f2b/web/ban', '-m', JSON.stringify({ ip: '203.0.113.24', origin: 'host-z' })]);
    await waitFor(async () => (await b.banned('web-sync')).includes('203.0.113.24'), "host-z's ban on B");
    const addresses = addressBlock(31, 15_000);
    const parts = encodeSnapshot('host-z', addresses);
    expect(parts.length).to.be.at.least(3);
    for (const payload of parts.slice(0, -1)) {
      const sent = await run('mosquitto_pub', ['-h', IPS[0]!, '-p', String(port), '-q', '1', '-t', 'f2b/web/snapshot', '-s'], 30_000, payload);
      expect(sent.code, sent.stderr).to.equal(0);
    }
    await waitFor(async () => (await snapshotsOf(b)).some((s) => s.origin === 'host-z' && !s.complete), 'the incomplete snapshot on B', 20_000);
    const [snapshot] = (await snapshotsOf(b)).filter((s) => s.origin === 'host-z');
    expect(snapshot).to.include({ complete: false, partsReceived: parts.length - 1, parts: parts.length, released: 0 });
    const banned = new Set(await b.banned('web-sync'));
    expect(banned.has('203.0.113.24'), 'nothing released').to.equal(true);
    expect(banned.has(addresses[0]!), 'the parts that came were added').to.equal(true);
    expect(b.requireAgent().output).to.match(/incomplete snapshot of web from host-z \(\d+ of \d+ parts: not every part arrived within 3 s\)/);
  });

  it('kill -9 of an agent mid-snapshot: after a restart it holds what it had taken in, and the next -f makes it exact', async () => {
    const addresses = addressBlock(32, 6_000);
    const parts = encodeSnapshot('host-y', addresses);
    // All but the last part: the snapshot stays open on C until it is killed.
    for (const payload of parts.slice(0, -1)) {
      const sent = await run('mosquitto_pub', ['-h', IPS[0]!, '-p', String(port), '-q', '1', '-t', 'f2b/web/snapshot', '-s'], 30_000, payload);
      expect(sent.code, sent.stderr).to.equal(0);
    }
    const journal = join(c.dir, 'state', 'holdings.journal');
    const taken = addresses.length - JSON.parse(parts.at(-1)!).ips.length;
    // Each part taken is one line: P host-y web <snapshot id> <address>...
    const inJournal = async () => (await readFile(journal, 'utf8')).split('\n').filter((line) => line.startsWith('P host-y web ')).reduce((sum, line) => sum + line.split(' ').length - 4, 0);
    await waitFor(async () => (await inJournal()) === taken, 'the parts in C\'s journal');
    await c.requireAgent().stop('SIGKILL');
    await c.startAgent();
    await c.waitSubscribed(3);
    await waitFor(async () => {
      const banned = new Set(await c.banned('web-sync'));
      return addresses.slice(0, taken).every((address) => banned.has(address));
    }, "C's sync jail holding what it took in", 60_000);
    expect(await holdingsOf(c, 'host-y')).to.equal(taken);

    // The origin then sends its full snapshot, whose set has changed meanwhile.
    const now = [...addresses.slice(1_000), '203.0.113.25'];
    for (const payload of encodeSnapshot('host-y', now)) {
      const sent = await run('mosquitto_pub', ['-h', IPS[0]!, '-p', String(port), '-q', '1', '-t', 'f2b/web/snapshot', '-s'], 30_000, payload);
      expect(sent.code, sent.stderr).to.equal(0);
    }
    await waitFor(async () => (await holdingsOf(c, 'host-y')) === now.length, 'the complete snapshot on C', 30_000);
    await waitFor(async () => {
      const banned = new Set(await c.banned('web-sync'));
      return now.every((address) => banned.has(address)) && addresses.slice(0, 1_000).every((address) => !banned.has(address));
    }, "C's sync jail equal to host-y's set", 60_000);
  });
});

describe('upgrade: the first start with no holdings store adopts what the sync jails hold', function () {
  this.timeout(120_000);
  let a: SimHost;
  let b: SimHost;
  let port: number;

  before(async () => {
    port = await freePortOn(IPS.slice(0, 2));
    [a, b] = await Promise.all(IPS.slice(0, 2).map((ip, index) => SimHost.start({ name: `up-${'ab'[index]}`, ip, port, peers: IPS.slice(0, 2).filter((peer) => peer !== ip) })));
    // Bans in B's sync jail from before the upgrade, and one entry that is not an address.
    for (const entry of ['203.0.113.30', '203.0.113.31', 'x;id']) await b.fail2ban.ban('sshd-sync', entry);
    await Promise.all([a.startAgent(), b.startAgent()]);
    await Promise.all([a.waitSubscribed(2), b.waitSubscribed(2)]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('lifts nothing, releases an adopted ban on any host\'s unban of it, and adopts only once', async () => {
    await waitFor(async () => part(await b.agentStatus(), 'sink', 'fail2ban').details.adopted === 2, 'the adoption on B');
    expect(measuredBy(part(await b.agentStatus(), 'fleet'), 'holdings_by_origin')).to.deep.equal({ '@adopted': 2 });
    expect((await b.banned('sshd-sync')).sort()).to.deep.equal(['203.0.113.30', '203.0.113.31', 'x;id']);

    const unban = await a.client(['-a', 'sshd', 'unbanip', '203.0.113.30']);
    expect(unban.code, unban.stderr).to.equal(0);
    await waitFor(async () => !(await b.banned('sshd-sync')).includes('203.0.113.30'), 'the adopted ban released on B');

    await b.requireAgent().stop();
    await b.startAgent();
    await waitFor(async () => part(await b.agentStatus(), 'sink', 'fail2ban').details.last_reconcile_ok !== undefined, "B's reconciliation after the restart");
    expect(part(await b.agentStatus(), 'sink', 'fail2ban').details).to.include({ last_reconcile_ok: true, adopted: 0 });
    expect((await b.banned('sshd-sync')).sort(), 'nothing else touched').to.deep.equal(['203.0.113.31', 'x;id']);
  });
});
