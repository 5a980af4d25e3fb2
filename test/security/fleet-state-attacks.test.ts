/**
 * Issue 25, findings 1, 2, 3 and 6, through real brokers to agents with a real fail2ban: what
 * one leaked account, forged origins or a fleet running -f at once do to the holdings store.
 */
import { expect } from 'chai';
import { encodeSnapshot } from '../../src/snapshot.js';
import { addressBlock, banIn, holdingsOf, snapshotsOf } from '../support/fleet-helpers.js';
import { connectedClient } from '../support/mqtt-client.js';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.js';
import { freePortOn } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { simultaneousFullSyncs } from '../support/simulated-hosts.js';
import { startStandaloneBroker, type StandaloneBroker } from '../support/standalone-broker.js';
import { measuredBy, part } from '../support/status.js';
import { usersSection } from '../support/users.js';
import { waitFor } from '../support/wait.js';

const PASSWORDS = { 'host-a': 'password of host a', 'host-b': 'password of host b', mallory: 'a leaked password' };

describe('the fleet state under attack (issue 25), through real brokers, real fail2ban', function () {
  this.timeout(300_000);

  describe('a leaked account (a hub with accounts)', () => {
    let hub: StandaloneBroker;
    let a: SimHost;
    let b: SimHost;
    before(async () => {
      hub = await startStandaloneBroker(await usersSection(PASSWORDS));
      const port = await freePortOn(['127.0.0.2', '127.0.0.3']);
      const login = (name: keyof typeof PASSWORDS) => `mqtt_password = ${PASSWORDS[name]}`;
      // A quota of 5,000 (the default is 100,000) keeps fail2ban's share of the test short.
      [a, b] = await Promise.all([
        SimHost.start({ name: 'host-a', ip: '127.0.0.2', port, brokerUrl: hub.url, extra: [login('host-a')] }),
        SimHost.start({ name: 'host-b', ip: '127.0.0.3', port, brokerUrl: hub.url, extra: [login('host-b'), 'max_holdings_per_origin = 5000'] }),
      ]);
      await b.startAgent();
    });
    after(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
      await hub?.stop();
    });

    it("fills only its own quota with a snapshot it never completes: another host's ban still reaches the sync jail, status names the account, across a restart", async () => {
      const mallory = await connectedClient(hub.url, { username: 'mallory', password: PASSWORDS.mallory });
      const parts = encodeSnapshot('mallory', addressBlock(60, 14_000));
      expect(parts.length).to.be.at.least(3);
      // Never the first part: the snapshot stays incomplete, its parts held as they come.
      for (const payload of parts.slice(1)) await mallory.publishAsync('f2b/web/snapshot', payload, { qos: 1 });
      await mallory.endAsync();
      await waitFor(async () => (await holdingsOf(b, 'mallory')) === 5_000, "mallory's 5,000 on B", 60_000);

      await a.fail2ban.ban('sshd', '203.0.113.70');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.70'), "host-a's ban in B's sync jail", 30_000);
      const status = await b.status();
      expect(status.healthy).to.equal(false);
      expect(status.problems.map((problem) => problem.what)).to.include("origin mallory holds 5000 bans in web, its quota: its further bans there are refused (other origins' are not)");
      expect(measuredBy(part(await b.agentStatus(), 'fleet'), 'refused')).to.deep.include({ quota: 14_000 - JSON.parse(parts[0]!).ips.length - 5_000 });

      await b.requireAgent().stop();
      await b.startAgent();
      expect(await holdingsOf(b, 'mallory')).to.equal(5_000);
      await a.fail2ban.ban('sshd', '203.0.113.71');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.71'), "host-a's next ban after B's restart", 30_000);
    });
  });

  describe('a fleet running -f together (an anonymous syncfail2ban-broker hub)', () => {
    let hub: StandaloneBroker;
    let b: SimHost;
    before(async () => {
      hub = await startStandaloneBroker();
      const port = await freePortOn(['127.0.0.3']);
      b = await SimHost.start({ name: 'host-b', ip: '127.0.0.3', port, brokerUrl: hub.url });
      await b.startAgent();
    });
    after(async () => {
      await b?.stop();
      await hub?.stop();
    });

    it('1,000 hosts running -f at once: every snapshot completes on B', async () => {
      const address = (i: number, k: number) => `10.70.${i >> 2}.${((i & 3) << 6) + k}`;
      await simultaneousFullSyncs(hub, 1_000, 'web', (i) => Array.from({ length: 6 }, (_, k) => address(i, k)));
      await waitFor(async () => Object.keys(measuredBy(part(await b.agentStatus(), 'fleet'), 'snapshot_complete')).length >= 1_000, '1,000 snapshots ended on B', 60_000, 500);
      const complete = measuredBy(part(await b.agentStatus(), 'fleet'), 'snapshot_complete');
      expect(Object.values(complete).filter((value) => value === 1).length).to.equal(1_000);
      expect(measuredBy(part(await b.agentStatus(), 'events'), 'refused')).to.deep.equal({});
      await waitFor(async () => (await b.bannedCount('web-sync')) === 6_000, "the 6,000 addresses in B's sync jail", 120_000, 1_000);
    });

    it("a host's empty snapshot releases its 30,000 holdings; a ban published meanwhile reaches B's sync jail while the release is still going on", async () => {
      const held = addressBlock(71, 30_000);
      const sender = await connectedClient(hub.url);
      const send = async (origin: string, addresses: string[]) => {
        for (const payload of encodeSnapshot(origin, addresses)) await sender.publishAsync('f2b/web/snapshot', payload, { qos: 1 });
      };
      try {
        await send('host-x', held);
        await waitFor(async () => (await b.banned('web-sync')).filter((address) => address.startsWith('10.71.')).length === held.length, "host-x's 30,000 in B's sync jail", 180_000, 1_000);
        await send('host-x', []);
        await sender.publishAsync('f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.72', origin: 'host-c' }), { qos: 1 });
        await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.72'), "host-c's ban in B's sync jail", 30_000, 20);
        const left = (await b.banned('web-sync')).filter((address) => address.startsWith('10.71.')).length;
        expect(left, 'the ban was not queued behind the release').to.be.greaterThan(0);
        await waitFor(async () => !(await b.banned('web-sync')).some((address) => address.startsWith('10.71.')), 'the release done in the sync jail', 180_000, 1_000);
        expect((await snapshotsOf(b)).find((s) => s.origin === 'host-x' && s.addresses === 0)).to.include({ complete: true, released: held.length });
      } finally {
        await sender.endAsync();
      }
    });
  });

  describe('-f says whether the snapshot was taken whole (a mosquitto hub)', () => {
    let hub: Mosquitto;
    let a: SimHost;
    let b: SimHost;
    const bans = addressBlock(72, 15_000);
    const restartWith = async (extra: string[]) => {
      for (const host of [a, b]) {
        await host.requireAgent().stop();
        await host.writeConfig(extra);
        await host.startAgent();
      }
    };
    before(async () => {
      hub = await startMosquitto();
      const port = await freePortOn(['127.0.0.2', '127.0.0.3']);
      [a, b] = await Promise.all([
        SimHost.start({ name: 'host-a', ip: '127.0.0.2', port, brokerUrl: hub.url, extra: ['snapshot_timeout = 5'] }),
        SimHost.start({ name: 'host-b', ip: '127.0.0.3', port, brokerUrl: hub.url, extra: ['snapshot_timeout = 5'] }),
      ]);
      for (const host of [a, b]) await host.writeConfig(['max_holdings_per_origin = 10000']);
      await Promise.all([a.startAgent(), b.startAgent()]);
      await banIn(a, 'web', bans);
    });
    after(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
      await hub?.stop();
    });

    it("exits 1 when the snapshot holds more than peers' quota, and B keeps the quota's worth", async () => {
      const result = await a.client(['-f', 'web']);
      expect(result.code).to.equal(1);
      expect(result.stdout).to.match(/received back whole by this host's agent/);
      expect(result.stderr).to.match(/the snapshot was not taken whole: it holds 15000 addresses, more than max_holdings_per_origin \(10000\); peers with that quota keep 10000 of them/);
      await waitFor(async () => (await holdingsOf(b, 'host-a')) === 10_000, "10,000 of host-a's held on B");
    });

    it("exits 0 and says so when this host's agent received it back whole", async () => {
      await restartWith([]);
      const result = await a.client(['-f', 'web']);
      expect(result.code, result.stderr).to.equal(0);
      expect(result.stdout).to.match(/^published a snapshot of jail web: 15000 address\(es\) in 4 part\(s\), every part acknowledged by the broker, and received back whole by this host's agent\n$/);
      await waitFor(async () => (await holdingsOf(b, 'host-a')) === 15_000, "host-a's 15,000 on B");
    });

    it('exits 1 when agents refused parts (a rate_burst too small for it): what it says is what B shows', async () => {
      await restartWith(['rate_limit = 1', 'rate_burst = 100']);
      const result = await a.client(['-f', 'web']);
      expect(result.code).to.equal(1);
      const said = /the snapshot was not taken whole: this host's agent received (\d) of its 4 part\(s\) back through the broker/.exec(result.stderr);
      expect(said, result.stderr).to.not.equal(null);
      expect(Number(said![1])).to.be.below(4);
      await waitFor(async () => (await snapshotsOf(b)).find((s) => s.origin === 'host-a' && s.jail === 'web' && !s.complete), 'the incomplete snapshot on B', 30_000);
    });
  });
});
