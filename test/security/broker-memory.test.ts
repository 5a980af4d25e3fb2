import { expect } from 'chai';
import { MqttClient } from 'mqtt';
import { createConnection } from 'node:net';
import { freePortOn } from '../support/ports.js';
import { residentMb } from '../support/memory.js';
import { RawMqtt } from '../support/raw-mqtt.js';
import { SimHost } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';

const MEMORY_BOUND_MB = 250;
const SESSIONS = 2_000;
const EVENTS = 20_000;
const SUBSCRIPTIONS = 100_000;

/** A JSON event padded towards the 1 KiB payload limit, for a jail nobody maps: it loads the broker, not fail2ban. */
function floodEvent(i: number): string {
  return JSON.stringify({ ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, pad: 'x'.repeat(900) });
}

async function flood(url: string, localAddress: string, count: number): Promise<void> {
  const { port, hostname } = new URL(url);
  const client = new MqttClient(() => createConnection({ host: hostname, port: Number(port), localAddress }), { reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => client.once('connect', () => resolve()).once('error', reject));
  for (let sent = 0; sent < count; sent += 1_000) {
    await Promise.all(Array.from({ length: Math.min(1_000, count - sent) }, (_, i) => client.publishAsync('f2b/attack/ban', floodEvent(sent + i), { qos: 1 })));
  }
  await client.endAsync();
}

/**
 * Finding 1 of the broker review, against a real embedded broker with real fail2ban behind
 * it: host b's embedded broker is the hub host a publishes through, and the attacker
 * reaches it too. Memory is read from b's agent process.
 */
describe('the embedded broker under memory attacks', function () {
  this.timeout(300_000);
  let a: SimHost;
  let b: SimHost;
  let url: string;
  let legit = 0;

  before(async () => {
    const port = await freePortOn(['127.0.0.3']);
    url = `mqtt://127.0.0.3:${port}`;
    b = await SimHost.start({ name: 'mem-b', ip: '127.0.0.3', port });
    a = await SimHost.start({ name: 'mem-a', ip: '127.0.0.2', port, brokerUrl: url });
    await b.startAgent();
    await a.startAgent();
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  /** A ban published by host a's client reaches b's sync jail within one second of the broker's acknowledgement. */
  async function legitimateBanArrives(): Promise<void> {
    legit += 1;
    const ip = `203.0.113.${100 + legit}`;
    const published = await a.client(['-a', 'sshd', 'banip', ip]);
    expect(published.code, published.stderr).to.equal(0);
    await waitFor(async () => (await b.banned('sshd-sync')).includes(ip), `${ip} on mem-b within 1 s`, 1_000, 20);
  }

  async function agentMemoryBounded(): Promise<void> {
    const agent = b.requireAgent();
    expect(agent.alive, agent.output.slice(-2000)).to.equal(true);
    const memory = await residentMb(agent.child.pid!);
    expect(memory.peak, `peak RSS of mem-b's agent: ${memory.peak.toFixed(0)} MB`).to.be.below(MEMORY_BOUND_MB);
  }

  it(`refuses ${SESSIONS} persistent sessions, so ${EVENTS} QoS 1 events queue for nobody`, async () => {
    const { port } = new URL(url);
    const codes = new Map<number | null, number>();
    for (let i = 0; i < SESSIONS; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, j) => {
          const n = i + j;
          const session = await RawMqtt.open({ host: '127.0.0.3', port: Number(port), localAddress: `127.0.1.${(n % 250) + 1}` });
          session.connect({ clientId: `offline-${n}`, clean: false });
          const code = await session.connack();
          if (code === 0) session.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'f2b/#', qos: 1 }] });
          codes.set(code, (codes.get(code) ?? 0) + 1);
          await session.close();
        }),
      );
    }
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
    const session = await RawMqtt.open({ host: '127.0.0.3', port: Number(port), localAddress: '127.0.3.1' });
    session.connect({ clientId: 'many-subscriptions' });
    expect(await session.connack()).to.equal(0);
    const perPacket = 50;
    for (let sent = 0; sent < SUBSCRIPTIONS; sent += perPacket) {
      const subscriptions = Array.from({ length: perPacket }, (_, i) => ({ topic: `f2b/j${sent + i}/ban`, qos: 1 as const }));
      session.send({ cmd: 'subscribe', messageId: (sent / perPacket) % 65_535 + 1, subscriptions });
    }
    const subacks = () => session.received.filter((packet) => packet.cmd === 'suback') as Array<{ granted: number[] }>;
    await waitFor(() => subacks().length === SUBSCRIPTIONS / perPacket, 'every SUBACK', 60_000);
    const granted = subacks().flatMap((packet) => packet.granted).filter((qos) => qos !== 128).length;
    expect(granted).to.equal(8);

    await legitimateBanArrives();
    await agentMemoryBounded();
    await session.close();
  });

  it('drops, and counts for it, what a subscriber that stops reading cannot take; everyone else is served at once', async () => {
    const { port } = new URL(url);
    const stalled = await RawMqtt.open({ host: '127.0.0.3', port: Number(port), localAddress: '127.0.4.1' });
    stalled.connect({ clientId: 'never-reads' });
    expect(await stalled.connack()).to.equal(0);
    stalled.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'f2b/#', qos: 1 }] });
    expect(await stalled.first('suback')).to.not.equal(null);
    stalled.socket.pause();

    const flooding = flood(url, '127.0.2.2', EVENTS);
    await waitFor(() => b.requireAgent().logLines().some((line) => line.reason === 'queue-full' && line.client === '127.0.4.1'), 'the broker to drop for the stalled client', 60_000);
    await legitimateBanArrives();
    await flooding;
    await legitimateBanArrives();
    await agentMemoryBounded();
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
