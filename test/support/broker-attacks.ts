import { connectedFrom } from './mqtt-client.js';
import { RawMqtt, type RawTarget } from './raw-mqtt.js';

/** A valid event for a jail nobody maps: it loads the brokers and agents, not fail2ban. */
export function floodEvent(i: number): string {
  return JSON.stringify({ ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` });
}

/** Not an event (agents refuse it), so a broker passes it on as it came: 1 KiB for every subscriber. */
export function floodJunk(): string {
  return 'junk '.repeat(200);
}

/** `count` QoS 1 messages from one connection at `localAddress`, 1,000 in flight at a time. */
export async function flood(url: string, localAddress: string, count: number, payload: (i: number) => string = floodEvent): Promise<void> {
  const client = await connectedFrom(url, localAddress);
  for (let sent = 0; sent < count; sent += 1_000) {
    await Promise.all(Array.from({ length: Math.min(1_000, count - sent) }, (_, i) => client.publishAsync('f2b/attack/ban', payload(sent + i), { qos: 1 })));
  }
  await client.endAsync();
}

/**
 * `count` clients that ask for a persistent session, subscribe to f2b/# at QoS 1 if they
 * get one, and leave, 50 at a time from 250 source addresses 127.0.1.x. Resolves with how
 * many got each CONNACK code (null: closed without one).
 */
export async function offlineSessions(target: RawTarget, count: number): Promise<Map<number | null, number>> {
  const codes = new Map<number | null, number>();
  for (let i = 0; i < count; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, count - i) }, async (_, j) => {
        const n = i + j;
        const session = await RawMqtt.open({ ...target, localAddress: `127.0.1.${(n % 250) + 1}` });
        session.connect({ clientId: `offline-${n}`, clean: false });
        const code = await session.connack();
        if (code === 0) session.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'f2b/#', qos: 1 }] });
        codes.set(code, (codes.get(code) ?? 0) + 1);
        await session.close();
      }),
    );
  }
  return codes;
}

/** One connection asking for `count` subscriptions, 50 per SUBSCRIBE; resolves with how many were granted, once every SUBACK is in. */
export async function manySubscriptions(target: RawTarget, count: number): Promise<{ session: RawMqtt; granted: number }> {
  const session = await RawMqtt.open(target);
  session.connect({ clientId: 'many-subscriptions' });
  if ((await session.connack()) !== 0) throw new Error('the broker refused the subscriber');
  const perPacket = 50;
  for (let sent = 0; sent < count; sent += perPacket) {
    const subscriptions = Array.from({ length: perPacket }, (_, i) => ({ topic: `f2b/j${sent + i}/ban`, qos: 1 as const }));
    session.send({ cmd: 'subscribe', messageId: ((sent / perPacket) % 65_535) + 1, subscriptions });
  }
  const subacks = () => session.received.filter((packet) => packet.cmd === 'suback') as Array<{ granted: number[] }>;
  while (subacks().length < count / perPacket) {
    if ((await Promise.race([session.closed.then(() => 'closed'), new Promise((resolve) => session.socket.once('data', resolve))])) === 'closed') break;
  }
  return { session, granted: subacks().flatMap((packet) => packet.granted).filter((qos) => qos !== 128).length };
}

/** A subscriber to f2b/# that stops reading once subscribed. */
export async function stalledSubscriber(target: RawTarget): Promise<RawMqtt> {
  const session = await RawMqtt.open(target);
  session.connect({ clientId: 'never-reads' });
  if ((await session.connack()) !== 0) throw new Error('the broker refused the subscriber');
  session.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'f2b/#', qos: 1 }] });
  await session.first('suback');
  session.socket.pause();
  return session;
}

/**
 * Finding 2 of the broker review: `addresses` source addresses 127.0.7.x, each keeping
 * `atOnce` wrong-password CONNECTs in flight (half naming the real account `account`, half
 * names that do not exist) until `stop` resolves; `answers` counts each CONNACK code
 * (null: closed without one).
 */
export function passwordGuessing(target: RawTarget, account: string, addresses: number, atOnce: number): { answers: Map<number | null, number>; stop: () => Promise<void> } {
  let attacking = true;
  const answers = new Map<number | null, number>();
  const attacker = async (address: number, slot: number) => {
    for (let n = 0; attacking; n++) {
      const session = await RawMqtt.open({ ...target, localAddress: `127.0.7.${address + 1}` }).catch(() => null);
      if (!session) continue;
      const username = address % 2 === 0 ? account : `guess-${address}-${slot}-${n}`;
      session.connect({ clientId: `guess-${address}-${slot}`, username, password: `wrong ${n}` });
      const code = await session.connack();
      answers.set(code, (answers.get(code) ?? 0) + 1);
      await session.close();
    }
  };
  const attack = Array.from({ length: addresses * atOnce }, (_, i) => attacker(i % addresses, Math.floor(i / addresses)));
  return {
    answers,
    stop: async () => {
      attacking = false;
      await Promise.all(attack);
    },
  };
}
