import { expect } from 'chai';
import type { AgentStatus } from '../../src/status.js';
import { hubOrder } from '../../src/config-hub.js';
import { addressBlock, banIn, snapshotsOf } from '../support/fleet-helpers.js';
import { measured, measuredBy, part } from '../support/status.js';
import { freePort } from '../support/ports.js';
import { startRedis, type PrivateRedis } from '../support/redis.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { logCount, startBrokerPair, type StandaloneBroker } from '../support/standalone-broker.js';
import { waitFor } from '../support/wait.js';

/** connection_timeout of every host below (SimHost's config). */
const CONNECTION_TIMEOUT_MS = 5_000;
const SNAPSHOT_SIZE = 100_000;
/** Six test runs share this machine's two cores: the parts of a 100,000-address snapshot get more than the default 60 s. */
const SHARED_MACHINE = 'snapshot_timeout = 300';

/** Where the host's clustered hub link is, as its status shows it. */
async function link(host: SimHost): Promise<{ url: unknown; state: unknown; preferred: unknown; failovers: number }> {
  const status = part(await host.agentStatus(), 'link');
  return { url: status.details.instance, state: status.details.state, preferred: status.details.preferred, failovers: measured(status, 'failovers') };
}

function sorted(list: Iterable<string>): string[] {
  return [...list].sort();
}

describe('clustered hub: two syncfail2ban-broker instances over Redis, three hosts with real fail2ban', function () {
  this.timeout(600_000);
  let redis: PrivateRedis;
  let one: StandaloneBroker;
  let two: StandaloneBroker;
  let hosts: SimHost[] = [];
  let a: SimHost;
  let b: SimHost;
  let c: SimHost;

  before(async () => {
    redis = await startRedis();
    [one, two] = await startBrokerPair(redis.url);
    const brokerUrl = `${one!.url} ${two!.url}`;
    const port = await freePort('127.0.0.2');
    hosts = await Promise.all(
      ['cl-a', 'cl-b', 'cl-c'].map((name, index) => SimHost.start({ name, ip: `127.0.0.${index + 2}`, port, brokerUrl, extra: [SHARED_MACHINE] })),
    );
    [a, b, c] = hosts as [SimHost, SimHost, SimHost];
    await Promise.all(hosts.map((host) => host.startAgent()));
  });

  after(async () => {
    await Promise.all(hosts.map((host) => host.stop()));
    await Promise.all([one?.stop(), two?.stop()]);
    await redis?.stop();
  });

  it('the fleet spreads over the instances, and a ban from a host on instance 1 reaches the hosts on instance 2', async () => {
    const urls = [one.url, two.url];
    // what hubOrder chooses for these names: cl-a and cl-c prefer instance 1, cl-b instance 2
    expect(hosts.map((host) => hubOrder(urls, host.name)[0])).to.deep.equal([one.url, two.url, one.url]);
    for (const host of hosts) {
      await waitFor(async () => {
        const status = await link(host);
        return status.state === 'connected' && status.url === status.preferred;
      }, `${host.name} subscribed on its preferred instance`);
    }
    await a.fail2ban.ban('sshd', '203.0.113.51');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.51'), 'the ban on cl-b (instance 2)');
    await waitFor(async () => (await c.banned('sshd-sync')).includes('203.0.113.51'), 'the ban on cl-c (instance 1)');
    await b.fail2ban.ban('sshd', '203.0.113.52');
    await waitFor(async () => (await a.banned('sshd-sync')).includes('203.0.113.52'), 'the ban from instance 2 on cl-a');
    expect(await a.banned('sshd-sync')).not.to.include('203.0.113.51');
  });

  it('an event delivered twice, through both instances, changes the fleet state once', async () => {
    const event = JSON.stringify({ ip: '198.51.100.60', origin: 'cl-b' });
    const pub = (broker: StandaloneBroker, action: string) =>
      run('mosquitto_pub', ['-h', broker.host, '-p', String(broker.port), '-q', '1', '-t', `f2b/sshd/${action}`, '-m', event]);
    const received = async (host: SimHost) => measured(part(await host.agentStatus(), 'events'), 'received');
    const before = await Promise.all([a, c].map(received));
    expect((await pub(one, 'ban')).code).to.equal(0);
    for (const host of [a, c]) await waitFor(async () => (await host.banned('sshd-sync')).includes('198.51.100.60'), `the ban on ${host.name}`);
    const once = await Promise.all([a, c].map((host) => host.agentStatus()));
    expect((await pub(two, 'ban')).code).to.equal(0);
    await waitFor(async () => (await Promise.all([a, c].map(received))).every((count, i) => count === before[i]! + 2), 'the second delivery on cl-a and cl-c');
    for (const [i, host] of [a, c].entries()) {
      const twice = await host.agentStatus();
      const holdings = (status: AgentStatus) => measuredBy(part(status, 'fleet'), 'holdings');
      expect(holdings(twice), `${host.name}'s holdings`).to.deep.equal(holdings(once[i]!));
      expect((await host.banned('sshd-sync')).filter((ip) => ip === '198.51.100.60')).to.have.length(1);
    }
    // one unban from the origin releases its one holding: the second delivery was not counted
    expect((await pub(two, 'unban')).code).to.equal(0);
    for (const host of [a, c]) await waitFor(async () => !(await host.banned('sshd-sync')).includes('198.51.100.60'), `the unban on ${host.name}`);
    expect(await b.banned('sshd-sync')).not.to.include('198.51.100.60'); // its own origin
  });

  it('instance 1 is killed: its hosts move to instance 2 and bans keep flowing within connection_timeout + 1 s', async () => {
    const killedAt = Date.now();
    await one.process.stop('SIGKILL');
    await a.fail2ban.ban('sshd', '203.0.113.53'); // cl-a's client finds instance 1 gone and publishes to instance 2
    const left = () => CONNECTION_TIMEOUT_MS + 1_000 - (Date.now() - killedAt);
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.53'), 'the ban on cl-b', left());
    await waitFor(async () => (await c.banned('sshd-sync')).includes('203.0.113.53'), 'the ban on cl-c, which was on instance 1', left());
    for (const host of [a, c]) expect(await link(host)).to.include({ url: two.url, state: 'connected', failovers: 1 });
    expect(a.requireAgent().alive && c.requireAgent().alive).to.equal(true);
  });

  it('instance 1 returns: its hosts go back to it (the fleet spreads again) and bans flow', async () => {
    await one.start();
    await waitFor(() => logCount(one, /connected to Redis/) === 1, 'instance 1 to reach Redis');
    for (const host of hosts) {
      await waitFor(async () => {
        const status = await link(host);
        return status.state === 'connected' && status.url === status.preferred;
      }, `${host.name} back on its preferred instance`, CONNECTION_TIMEOUT_MS * 3);
    }
    expect((await link(a)).url).to.equal(one.url);
    expect((await link(b)).url).to.equal(two.url);
    await c.fail2ban.ban('sshd', '203.0.113.54');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.54'), 'the ban from instance 1 on cl-b');
    await waitFor(async () => (await a.banned('sshd-sync')).includes('203.0.113.54'), 'the ban on cl-a');
  });

  it('Redis restarted mid-traffic: no agent or broker dies, and after one -f per host every sync jail is complete', async () => {
    let round = 0;
    const traffic = (async () => {
      for (; round < 12; round++) {
        await Promise.all(hosts.map((host, index) => host.fail2ban.ban('sshd', `203.0.113.${100 + index * 20 + round}`)));
      }
    })();
    await waitFor(() => round >= 3, 'traffic to be under way');
    await redis.stopProcess();
    await waitFor(() => round >= 7, 'traffic while Redis is down', 60_000);
    await redis.startProcess();
    await traffic;
    for (const broker of [one, two]) await waitFor(() => logCount(broker, /connected to Redis/) >= 2, 'the instance to reconnect to Redis');
    expect([...hosts.map((host) => host.requireAgent().alive), one.process.alive, two.process.alive]).to.deep.equal([true, true, true, true, true]);

    for (const host of hosts) {
      const result = await host.client(['-f', 'sshd']);
      expect(result.code, result.stderr).to.equal(0);
    }
    const primary = new Map(await Promise.all(hosts.map(async (host) => [host, await host.banned('sshd')] as const)));
    for (const host of hosts) {
      const expected = sorted(new Set(hosts.filter((other) => other !== host).flatMap((other) => primary.get(other)!)));
      expect(expected.length).to.be.at.least(24);
      let held: string[] = [];
      try {
        await waitFor(async () => JSON.stringify((held = sorted(await host.banned('sshd-sync')))) === JSON.stringify(expected), `${host.name}'s sync jail to be complete`);
      } finally {
        expect(held, `${host.name}'s sshd-sync`).to.deep.equal(expected);
      }
    }
  });

  it(`a snapshot of ${SNAPSHOT_SIZE.toLocaleString('en')} addresses from a host on instance 1 reaches the hosts on both instances complete`, async () => {
    const addresses = [...addressBlock(60, 65_536), ...addressBlock(61, SNAPSHOT_SIZE - 65_536)];
    await banIn(a, 'web', addresses);
    expect((await a.banned('web')).length).to.equal(SNAPSHOT_SIZE);
    const result = await a.client(['-f', 'web']);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.match(new RegExp(`published a snapshot of jail web: ${SNAPSHOT_SIZE} address\\(es\\) in \\d+ part\\(s\\), every part acknowledged`));
    for (const peer of [b, c]) {
      const snapshot = async () => (await snapshotsOf(peer)).find((s) => s.origin === 'cl-a' && s.jail === 'web');
      const warnings = () => JSON.stringify(peer.requireAgent().logLines().filter((line) => Number(line.level) >= 40).map((line) => `${line.msg}${line.err ? ` (${String(line.err)})` : ''}`));
      await waitFor(async () => (await snapshot())?.complete, `the complete snapshot on ${peer.name}`, 300_000, 500).catch(async (error: Error) => {
        throw new Error(`${error.message}: ${JSON.stringify(await snapshot())}, its warnings: ${warnings()}`);
      });
      expect(await snapshot(), `on ${peer.name} (its warnings: ${warnings()})`).to.include({ complete: true, addresses: SNAPSHOT_SIZE, added: SNAPSHOT_SIZE });
    }
    for (const peer of [b, c]) {
      await waitFor(async () => (await peer.bannedCount('web-sync')) === SNAPSHOT_SIZE, `${peer.name}'s web-sync to hold every address`, 300_000, 1_000);
      expect(new Set(await peer.banned('web-sync'))).to.deep.equal(new Set(addresses));
    }
  });
});
