import { expect } from 'chai';
import { Fail2banClient } from '../../src/fail2ban/client.js';
import { holdingsOf } from '../support/fleet-helpers.js';
import { freePort, freePortOn } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { measured, measuredBy, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const IPS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
/** B's clock is this far ahead of A's, C's as far behind. */
const SKEW_S = 30;
/** How long A's fail2ban bans (A runs the Python action: no process per ban, so the ban reaches B and C well within it). */
const A_BANTIME_S = 5;
/** How long C's fail2ban bans (C runs the shipped shell action, the client with fail2ban's <bantime>). */
const C_BANTIME_S = 600;
/** A ban that no unban follows, from an origin that is not a host here. */
const BANTIME_S = 6;

/** When an address left a host's sync jail: after `lastHeld` (a look that still found it began then), by `released` (a look that no longer did ended then). */
interface Release {
  lastHeld: number;
  released: number;
}

describe("leases: every ban ends at its origin's end, on every host (3 hosts, mesh, real fail2ban, clocks 30 s apart)", function () {
  this.timeout(180_000);
  let hosts: SimHost[];
  let port: number;
  let a: SimHost;
  let b: SimHost;
  let c: SimHost;
  /** B's /metrics. */
  let metricsPort: number;

  /** Publishes a ban (or unban) from an origin that is not a host here, on A's broker, as a script would; resolves once the broker took it. */
  async function publish(action: 'ban' | 'unban', payload: Record<string, unknown>): Promise<void> {
    const sent = await run('mosquitto_pub', ['-h', IPS[0]!, '-p', String(port), '-q', '1', '-t', `f2b/sshd/${action}`, '-m', JSON.stringify(payload)]);
    expect(sent.code, sent.stderr).to.equal(0);
  }

  /** Looks at the host's sync jail over fail2ban's socket every 50 ms until `address` has left it. */
  async function watchRelease(host: SimHost, address: string, timeoutMs: number): Promise<Release> {
    const client = new Fail2banClient(host.fail2ban.socket, { timeoutMs: 10_000 });
    let lastHeld = 0;
    try {
      return await waitFor(
        async () => {
          const asked = Date.now();
          if ((await client.banned('sshd-sync')).includes(address)) {
            lastHeld = asked;
            return undefined;
          }
          return { lastHeld, released: Date.now() };
        },
        `${address} released on ${host.name}`,
        timeoutMs,
      );
    } finally {
      await client.close();
    }
  }

  /** Releases at a lease's end so far on the host. */
  const expiries = async (host: SimHost) => measuredBy(await fleetOf(host), 'released').expiry!;
  const inSyncJail = (host: SimHost, address: string) => waitFor(async () => (await host.banned('sshd-sync')).includes(address), `${address} in ${host.name}'s sync jail`);
  const fleetOf = async (host: SimHost) => part(await host.agentStatus(), 'fleet');
  /** The host's next lease end, read back to A's clock. */
  const nextEnd = async (host: SimHost) => measured(await fleetOf(host), 'lease_next_end') * 1000 - (host.options.clockOffsetS ?? 0) * 1000;

  before(async () => {
    port = await freePortOn(IPS);
    metricsPort = await freePort();
    hosts = await Promise.all(
      IPS.map((ip, index) =>
        SimHost.start({
          name: `host-${'abc'[index]}`,
          ip,
          port,
          peers: IPS.filter((peer) => peer !== ip),
          // A's own bans last 5 s (the Python action), C's 10 minutes (the shell action); B's clock is ahead of A's, C's behind.
          ...(index === 0 ? { action: 'python' as const, sshd: { bantime: A_BANTIME_S } } : { clockOffsetS: index === 1 ? SKEW_S : -SKEW_S }),
          ...(index === 2 ? { sshd: { bantime: C_BANTIME_S } } : {}),
          ...(index === 1 ? { extra: [`metrics_port = ${metricsPort}`] } : {}),
        }),
      ),
    );
    [a, b, c] = hosts as [SimHost, SimHost, SimHost];
    await Promise.all(hosts.map((host) => host.startAgent()));
    await Promise.all(hosts.map((host) => host.waitSubscribed(3)));
  });

  after(async () => {
    await Promise.all((hosts ?? []).map((host) => host.stop()));
  });

  afterEach(async () => {
    // Every test leaves no lease behind, so that the next reads its own next end.
    for (const host of [a, b, c]) await waitFor(async () => measured(await fleetOf(host), 'leases') === 0, `no lease left on ${host.name}`, 20_000);
  });

  it('a ban for 6 s that no unban follows: B and C release it at its end by their own clocks, neither early nor late', async () => {
    const sent = Date.now();
    await publish('ban', { ip: '203.0.113.61', origin: 'host-z', bantime: BANTIME_S });
    const taken = Date.now();
    const end = BANTIME_S * 1_000;
    await Promise.all([b, c].map((host) => inSyncJail(host, '203.0.113.61')));
    for (const host of [b, c]) expect(await nextEnd(host), `${host.name}'s end`).to.be.within(sent + end, taken + end + 1_000);
    const releases = await Promise.all([b, c].map((host) => watchRelease(host, '203.0.113.61', end + 15_000)));
    releases.forEach(({ lastHeld, released }, index) => {
      const host = [b, c][index]!;
      // Held until its end (a look at most 1 s before it still found it), released within 2 s of it.
      expect(lastHeld, `${host.name} held it until its end`).to.be.at.least(sent + end - 1_000);
      expect(released, `${host.name} released it within 2 s of its end`).to.be.at.most(taken + end + 2_000);
    });
    for (const host of [b, c]) expect(measuredBy(await fleetOf(host), 'released')).to.include({ expiry: 1 });
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).to.match(/^syncfail2ban_fleet_released_total\{cause="expiry"\} 1$/m);
    expect(metrics).to.match(/^syncfail2ban_fleet_leases 0$/m);
    expect(metrics, 'no next end while no lease is held').to.not.include('syncfail2ban_fleet_lease_next_end');
  });

  it('a longer re-ban moves the end later, a shorter one leaves it; an unban still releases at once', async () => {
    const before = await Promise.all([b, c].map(expiries));
    const sent = Date.now();
    await publish('ban', { ip: '203.0.113.62', origin: 'host-z', bantime: 2 });
    await publish('ban', { ip: '203.0.113.62', origin: 'host-z', bantime: 60 });
    await publish('ban', { ip: '203.0.113.62', origin: 'host-z', bantime: 1 });
    // A witness of the first end, published after: once its lease ended, 203.0.113.62's first end has passed too.
    await publish('ban', { ip: '203.0.113.63', origin: 'host-z', bantime: 2 });
    await Promise.all([b, c].map((host, index) => waitFor(async () => (await expiries(host)) > before[index]!, `the witness's end on ${host.name}`)));
    for (const host of [b, c]) {
      expect(await host.banned('sshd-sync'), `${host.name} holds it past its first end`).to.include('203.0.113.62');
      expect(await nextEnd(host), `${host.name}'s end is the latest`).to.be.within(sent + 60_000, Date.now() + 60_000);
    }
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).to.match(/^syncfail2ban_fleet_leases 1$/m);
    const nextEndMetric = Number(/^syncfail2ban_fleet_lease_next_end_timestamp_seconds (\S+)$/m.exec(metrics)?.[1]);
    expect(nextEndMetric * 1000 - SKEW_S * 1000, "B's next end in /metrics, by its clock").to.be.within(sent + 60_000, Date.now() + 60_000);
    const unbanned = Date.now();
    await publish('unban', { ip: '203.0.113.62', origin: 'host-z' });
    for (const { released } of await Promise.all([b, c].map((host) => watchRelease(host, '203.0.113.62', 10_000)))) expect(released - unbanned).to.be.below(2_000);
  });

  it("a ban without bantime (the original's action line) stays until unbanned", async () => {
    const plain = await a.client(['-a', 'sshd', 'banip', '203.0.113.64']);
    expect(plain.code, plain.stderr).to.equal(0);
    await Promise.all([b, c].map((host) => inSyncJail(host, '203.0.113.64')));
    const before = await Promise.all([b, c].map(expiries));
    // A witness with an end, published after: once its lease ended, an end of the first would have passed too.
    await publish('ban', { ip: '203.0.113.65', origin: 'host-z', bantime: 2 });
    await Promise.all([b, c].map((host, index) => waitFor(async () => (await expiries(host)) > before[index]!, `the witness's end on ${host.name}`)));
    for (const host of [b, c]) expect(await host.banned('sshd-sync'), host.name).to.include('203.0.113.64');
    const unban = await a.client(['-a', 'sshd', 'unbanip', '203.0.113.64']);
    expect(unban.code, unban.stderr).to.equal(0);
    await Promise.all([b, c].map((host) => watchRelease(host, '203.0.113.64', 10_000)));
  });

  it("the shell action passes fail2ban's <bantime>: C's ban of 10 minutes ends then on A and B", async () => {
    const before = Date.now();
    await c.fail2ban.ban('sshd', '203.0.113.68');
    const banned = Date.now();
    await inSyncJail(b, '203.0.113.68');
    expect(await nextEnd(b), "B's end").to.be.within(before + C_BANTIME_S * 1_000 - 1_000, banned + C_BANTIME_S * 1_000 + 2_000);
    await waitFor(async () => (await a.banned('sshd-sync')).includes('203.0.113.68'), "C's ban on A");
    expect(measured(await fleetOf(a), 'leases'), "A's lease").to.equal(1);
    await c.fail2ban.unban('sshd', '203.0.113.68');
    await Promise.all([a, b].map((host) => watchRelease(host, '203.0.113.68', 10_000)));
  });

  it("A's fail2ban bans X for 5 s; B, stopped before the end and started after it, releases X as it starts, with no -f", async () => {
    const before = Date.now();
    await a.fail2ban.ban('sshd', '203.0.113.66');
    const banned = Date.now();
    await Promise.all([b, c].map((host) => inSyncJail(host, '203.0.113.66')));
    // The shipped action sent the time the ban has left: B and C end it when A does.
    for (const host of [b, c]) expect(await nextEnd(host), `${host.name}'s end`).to.be.within(before + A_BANTIME_S * 1_000, banned + A_BANTIME_S * 1_000 + 2_000);
    await b.requireAgent().stop();
    // A lifts it at its end (its unban reaches C; B is down and misses it).
    await waitFor(async () => !(await a.banned('sshd')).includes('203.0.113.66'), 'the end of the ban on A', 15_000);
    await watchRelease(c, '203.0.113.66', 10_000);
    expect(await b.banned('sshd-sync'), 'B was down at the end').to.include('203.0.113.66');

    await b.startAgent();
    const up = Date.now();
    const { released } = await watchRelease(b, '203.0.113.66', 10_000);
    expect(released - up, 'released within 2 s of B being up').to.be.below(2_000);
    expect(b.requireAgent().output).to.include('released 1 holding(s) whose bantime ended while the agent was not running');
    await b.waitSubscribed(3);
  });

  it('a snapshot carries the ends: -f brings B a ban it missed, with the time the ban has left', async () => {
    await b.requireAgent().stop();
    // Long enough to outlast B's restart and -f (fail2ban applies a jail's bantime to the bans it holds).
    await a.fail2ban.cli('set', 'sshd', 'bantime', '600');
    const before = Date.now();
    await a.fail2ban.ban('sshd', '203.0.113.67');
    const banned = Date.now();
    await waitFor(async () => (await holdingsOf(c, 'host-a')) === 1, "A's ban on C");
    await b.startAgent();
    await b.waitSubscribed(3);
    await a.waitSubscribed(3);
    expect(await b.banned('sshd-sync'), 'B missed the ban').to.not.include('203.0.113.67');

    const result = await a.client(['-f', 'sshd']);
    expect(result.code, result.stderr).to.equal(0);
    await inSyncJail(b, '203.0.113.67');
    expect(await nextEnd(b), "B's end, from the snapshot").to.be.within(before + 600_000, banned + 600_000 + 2_000);
    await a.fail2ban.unban('sshd', '203.0.113.67');
    await a.fail2ban.cli('set', 'sshd', 'bantime', String(A_BANTIME_S));
    await Promise.all([b, c].map((host) => watchRelease(host, '203.0.113.67', 10_000)));
  });
});

