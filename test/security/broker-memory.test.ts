import { expect } from 'chai';
import { flood, floodJunk, manySubscriptions, offlineSessions, stalledSubscriber } from '../support/broker-attacks.js';
import { freePortOn } from '../support/ports.js';
import { residentMb } from '../support/memory.js';
import { RawMqtt } from '../support/raw-mqtt.js';
import { SimHost } from '../support/sim-host.js';
import { measured, measuredBy, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const MEMORY_BOUND_MB = 250;
const SESSIONS = 2_000;
const EVENTS = 20_000;
const SUBSCRIPTIONS = 100_000;

/**
 * Finding 1 of the broker review, against a real embedded broker with real fail2ban behind
 * it: the attacker reaches host b's embedded broker; legitimate bans come from its mesh peer
 * a, and from c, which publishes through b's broker. Memory is read from b's agent process.
 */
describe('the embedded broker under memory attacks', function () {
  this.timeout(300_000);
  let a: SimHost;
  let b: SimHost;
  let c: SimHost;
  let url: string;
  let legit = 0;

  before(async () => {
    const port = await freePortOn(['127.0.0.2', '127.0.0.3']);
    url = `mqtt://127.0.0.3:${port}`;
    // a and b are a mesh; c publishes through b's broker (a hub for it), so a stall there would hold up c's bans.
    b = await SimHost.start({ name: 'mem-b', ip: '127.0.0.3', port, peers: ['127.0.0.2'] });
    a = await SimHost.start({ name: 'mem-a', ip: '127.0.0.2', port, peers: ['127.0.0.3'] });
    c = await SimHost.start({ name: 'mem-c', ip: '127.0.0.4', port, brokerUrl: url, fail2ban: false });
    await Promise.all([b.startAgent(), a.startAgent()]);
    await b.waitSubscribed(2);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop(), c?.stop()]);
  });

  /**
   * A ban published by host a's client is applied to b's sync jail (b's agent logs the batch)
   * within one second of the broker's acknowledgement, and fail2ban then holds it.
   */
  async function legitimateBanArrives(from: SimHost = a): Promise<void> {
    legit += 1;
    const ip = `203.0.113.${100 + legit}`;
    const applied = () => b.requireAgent().logLines().filter((line) => line.jail === 'sshd-sync' && Number(line.bans) > 0).length;
    const before = applied();
    const published = await from.client(['-a', 'sshd', 'banip', ip]);
    expect(published.code, published.stderr).to.equal(0);
    await waitFor(() => applied() > before, `${ip} applied on mem-b within 1 s`, 1_000, 10);
    expect(await b.banned('sshd-sync')).to.include(ip);
  }

  async function agentMemoryBounded(): Promise<void> {
    const agent = b.requireAgent();
    expect(agent.alive, agent.output.slice(-2000)).to.equal(true);
    const memory = await residentMb(agent.child.pid!);
    expect(memory.peak, `peak RSS of mem-b's agent: ${memory.peak.toFixed(0)} MB`).to.be.below(MEMORY_BOUND_MB);
  }

  it(`refuses ${SESSIONS} persistent sessions, so ${EVENTS} QoS 1 events queue for nobody`, async () => {
    const { port } = new URL(url);
    const codes = await offlineSessions({ host: '127.0.0.3', port: Number(port) }, SESSIONS);
    expect(Object.fromEntries(codes)).to.deep.equal({ 5: SESSIONS });

    const flooding = flood(url, '127.0.2.1', EVENTS);
    await legitimateBanArrives();
    await flooding;
    await legitimateBanArrives();
    await agentMemoryBounded();
    await waitFor(() => b.requireAgent().logLines().some((line) => line.reason === 'persistent-session' && line.component === 'broker'), 'the broker to log the refused session');
  });

  it(`grants a client a handful of its ${SUBSCRIPTIONS} subscriptions`, async () => {
    const { port } = new URL(url);
    const { session, granted } = await manySubscriptions({ host: '127.0.0.3', port: Number(port), localAddress: '127.0.3.1' }, SUBSCRIPTIONS);
    expect(granted).to.equal(8);

    await legitimateBanArrives();
    await agentMemoryBounded();
    await session.close();
  });

  it('drops, and counts for it, what a subscriber that stops reading cannot take; everyone else is served at once', async () => {
    const { port } = new URL(url);
    const stalled = await stalledSubscriber({ host: '127.0.0.3', port: Number(port), localAddress: '127.0.4.1' });

    const flooding = flood(url, '127.0.2.2', EVENTS, floodJunk);
    await waitFor(() => b.requireAgent().logLines().some((line) => line.reason === 'queue-full' && line.client === '127.0.4.1'), 'the broker to drop for the stalled client', 60_000);
    await legitimateBanArrives(c);
    await flooding;
    await legitimateBanArrives(c);
    await agentMemoryBounded();

    // What the operator sees: the drops counted in status --json, the stalled client named.
    const broker = part((await b.status()).status, 'broker');
    const dropped = measured(broker, 'dropped');
    const byClient = measuredBy(broker, 'dropped_by_client');
    expect(byClient['127.0.4.1'], JSON.stringify(byClient)).to.be.above(0);
    expect(Object.keys(byClient)).to.have.length.at.most(10);
    expect(dropped).to.be.at.least(byClient['127.0.4.1']!);
    expect(measuredBy(broker, 'refused')['queue-full']).to.equal(dropped);
    const text = await b.client(['status']);
    expect(text.stdout).to.match(/^ {2}clients \d+, messages in \d+, messages out \d+, dropped [1-9]\d*$/m);
    expect(text.stdout).to.match(/^ {2}dropped by client: 127\.0\.4\.1 \d+/m);
    await stalled.close();
  });

  it('holds at most 64 connections per source address; other addresses still connect', async () => {
    const { port } = new URL(url);
    const open = (localAddress: string) => RawMqtt.open({ host: '127.0.0.3', port: Number(port), localAddress });
    const held = await Promise.all(Array.from({ length: 64 }, () => open('127.0.5.1')));
    await Promise.all(held.map((session, i) => session.connect({ clientId: `held-${i}` })));
    expect(await Promise.all(held.map((session) => session.connack()))).to.deep.equal(Array(64).fill(0));
    const over = await open('127.0.5.1');
    over.connect({ clientId: 'one-too-many' });
    expect(await over.connack()).to.equal(null);
    const other = await open('127.0.5.2');
    other.connect({ clientId: 'elsewhere' });
    expect(await other.connack()).to.equal(0);
    await Promise.all([...held, over, other].map((session) => session.close()));
    await legitimateBanArrives();
  });
});
