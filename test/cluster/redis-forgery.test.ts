import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { MqttClient } from 'mqtt';
import { sealFrame } from '../../broker/bus-frame.js';
import { BUS_CHANNEL } from '../../broker/cluster.js';
import { connectedClient } from '../support/mqtt-client.js';
import { startRedis, type PrivateRedis } from '../support/redis.js';
import { run } from '../support/run.js';
import { startBrokerPair, type StandaloneBroker } from '../support/standalone-broker.js';
import { measuredBy, part } from '../support/status.js';
import { usersSection } from '../support/users.js';
import { waitFor } from '../support/wait.js';

const ACCOUNTS = { 'host-a': 'correct horse battery a', 'host-b': 'correct horse battery b' };

/** What one MQTT.js subscriber to f2b/# received, and whether it was ever disconnected. */
interface Subscriber {
  client: MqttClient;
  received: string[];
  closed: number;
}

async function subscribe(broker: StandaloneBroker, account: keyof typeof ACCOUNTS): Promise<Subscriber> {
  const client = await connectedClient(broker.url, { username: account, password: ACCOUNTS[account] });
  const subscriber: Subscriber = { client, received: [], closed: 0 };
  client.on('message', (topic, payload) => subscriber.received.push(`${topic} ${payload.toString()}`));
  client.on('close', () => (subscriber.closed += 1));
  await client.subscribeAsync('f2b/#', { qos: 1 });
  return subscriber;
}

function publish(broker: StandaloneBroker, account: keyof typeof ACCOUNTS, topic: string, message: string) {
  return run('mosquitto_pub', ['-h', broker.host, '-p', String(broker.port), '-q', '1', '-u', account, '-P', ACCOUNTS[account], '-t', topic, '-m', message]);
}

/** msgpack of a map of strings, small integers, booleans and buffers: the framing mqemitter-redis put on Redis. */
function msgpack(value: unknown): Buffer {
  if (typeof value === 'string') return Buffer.concat([Buffer.from([0xd9, Buffer.byteLength(value)]), Buffer.from(value)]);
  if (typeof value === 'number') return Buffer.from([value]);
  if (typeof value === 'boolean') return Buffer.from([value ? 0xc3 : 0xc2]);
  if (Buffer.isBuffer(value)) return Buffer.concat([Buffer.from([0xc4, value.length]), value]);
  const entries = Object.entries(value as Record<string, unknown>);
  return Buffer.concat([Buffer.from([0x80 | entries.length]), ...entries.flatMap(([key, item]) => [msgpack(key), msgpack(item)])]);
}

/** A message as instances framed them on Redis before the bus was signed: {id, msg: packet}. */
function unsignedFrame(topic: string, payload: string): Buffer {
  const id = randomBytes(8).toString('hex');
  return msgpack({ id, msg: { cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, brokerId: `forger-${id}`, brokerCounter: 1 } });
}

describe('clustered hub: whoever can publish into Redis forges nothing', function () {
  this.timeout(120_000);
  let redis: PrivateRedis;
  let one: StandaloneBroker;
  let two: StandaloneBroker;
  let subscribers: Subscriber[] = [];
  const redisClients: Redis[] = [];

  before(async () => {
    redis = await startRedis({ password: 'cluster secret 43' });
    [one, two] = await startBrokerPair(redis.url, await usersSection(ACCOUNTS));
  });

  after(async () => {
    await Promise.all(subscribers.map((subscriber) => subscriber.client.endAsync()));
    redisClients.forEach((client) => client.disconnect());
    await Promise.all([one?.stop(), two?.stop()]);
    await redis?.stop();
  });

  it('forged bans and unbans, replays of what the instances sent, and $SYS client-id announcements reach no client and close none', async () => {
    // Someone with access to Redis (its password) records everything on it...
    const spy = new Redis(redis.url);
    const attacker = new Redis(redis.url);
    redisClients.push(spy, attacker);
    const recorded: Array<[Buffer, Buffer]> = [];
    spy.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, message: Buffer) => recorded.push([channel, message]));
    await spy.psubscribe('*');
    subscribers = await Promise.all([subscribe(one, 'host-a'), subscribe(two, 'host-b')]);
    const [onOne, onTwo] = subscribers as [Subscriber, Subscriber];
    const count = (subscriber: Subscriber, text: string) => subscriber.received.filter((line) => line.includes(text)).length;
    expect((await publish(one, 'host-a', 'f2b/sshd/ban', '198.51.100.60')).code).to.equal(0);
    await waitFor(() => count(onOne, '198.51.100.60') === 1 && count(onTwo, '198.51.100.60') === 1, 'a legitimate ban on both instances');
    await waitFor(() => recorded.length > 0, 'the spy to record the ban crossing Redis');
    const fromInstances = [...recorded];
    // Client ids never cross Redis: nothing there tells an attacker whom to impersonate.
    const everything = Buffer.concat(fromInstances.map(([, message]) => message));
    for (const { client } of subscribers) expect(everything.includes(client.options.clientId!), 'a client id in Redis').to.equal(false);

    // ...replays all of it,
    for (const [channel, message] of fromInstances) await attacker.publish(channel, message);
    // forges, as instances framed messages before: a fleet-wide unban of that ban, a ban "from" host-a,
    await attacker.publish('f2b/sshd/unban', unsignedFrame('f2b/sshd/unban', '198.51.100.60'));
    await attacker.publish('f2b/sshd/ban', unsignedFrame('f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.51', origin: 'host-a' })));
    // announces each subscriber's client id as taken on another broker (Aedes then closes it),
    for (const { client } of subscribers) {
      const topic = `$SYS/${randomBytes(4).toString('hex')}/new/clients`;
      await attacker.publish(topic, unsignedFrame(topic, client.options.clientId!));
    }
    // and signs a ban with a key of its own on the bus's channel.
    const forged = { sender: 'forger', seq: 1, time: Date.now(), topic: 'f2b/sshd/ban', payload: Buffer.from('203.0.113.52'), qos: 1 as const, counter: 1 };
    await attacker.publish(BUS_CHANNEL, sealFrame(randomBytes(32).toString('hex'), forged));

    // A legitimate event after all that arrives once on each instance, and nothing forged did.
    expect((await publish(two, 'host-b', 'f2b/sshd/ban', '198.51.100.61')).code).to.equal(0);
    await waitFor(() => count(onOne, '198.51.100.61') === 1 && count(onTwo, '198.51.100.61') === 1, 'the later legitimate ban on both instances');
    for (const subscriber of [onOne, onTwo]) {
      expect(subscriber.received.join('\n')).not.to.match(/unban|203\.0\.113\.5[12]/);
      expect(count(subscriber, '198.51.100.60'), 'the replayed ban delivered again').to.equal(1);
      expect(subscriber.closed, 'disconnections').to.equal(0);
      expect(subscriber.client.connected).to.equal(true);
    }

    const cluster = part(await two.status(), 'cluster');
    expect(measuredBy(cluster, 'refused')).to.include.keys('cluster-replayed', 'cluster-unsigned');
    expect(cluster.problems.map((problem) => problem.fix).join('\n')).to.match(/same cluster_key/);
    expect([one.process.alive, two.process.alive]).to.deep.equal([true, true]);
  });
});
