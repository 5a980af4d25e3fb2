import { expect } from 'chai';
import type { MqttClient } from 'mqtt';
import { makeTestCa } from '../support/certs.js';
import { connectedClient } from '../support/mqtt-client.js';
import { startRedis, type PrivateRedis } from '../support/redis.js';
import { run } from '../support/run.js';
import { logCount, startBrokerPair, type StandaloneBroker } from '../support/standalone-broker.js';
import { hashWithCli, usersSection } from '../support/users.js';
import { waitFor } from '../support/wait.js';

const REDIS_PASSWORD = 'cluster secret 42';
const ACCOUNTS = { 'host-a': 'correct horse battery a', 'host-b': 'correct horse battery b' };

/** An MQTT.js subscriber to f2b/# that records what it receives, in order. */
class Listener {
  readonly received: string[] = [];
  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload) => this.received.push(`${topic} ${payload.toString()}`));
  }

  static async on(url: string, username: string): Promise<Listener> {
    const client = await connectedClient(url, { username, password: ACCOUNTS[username as keyof typeof ACCOUNTS] });
    await client.subscribeAsync('f2b/#', { qos: 1 });
    return new Listener(client);
  }

  count(text: string): number {
    return this.received.filter((line) => line.includes(text)).length;
  }
}

function publish(broker: StandaloneBroker, account: keyof typeof ACCOUNTS, topic: string, message: string) {
  return run('mosquitto_pub', ['-h', broker.host, '-p', String(broker.port), '-q', '1', '-u', account, '-P', ACCOUNTS[account], '-t', topic, '-m', message]);
}

/** Two syncfail2ban-broker instances over one Redis, with [users] (every instance enforces the same rules). */
async function startCluster(redis: PrivateRedis, extra: string[] = []): Promise<[StandaloneBroker, StandaloneBroker]> {
  return startBrokerPair(redis.url, [...extra, ...(await usersSection(ACCOUNTS, hashWithCli))]);
}

describe('clustered hub: syncfail2ban-broker instances sharing one bus through Redis', function () {
  this.timeout(120_000);
  let redis: PrivateRedis;
  let one: StandaloneBroker;
  let two: StandaloneBroker;
  let listeners: Listener[] = [];

  before(async () => {
    redis = await startRedis({ password: REDIS_PASSWORD });
    [one, two] = await startCluster(redis);
  });

  afterEach(async () => {
    await Promise.all(listeners.map((listener) => listener.client.endAsync()));
    listeners = [];
  });

  after(async () => {
    await Promise.all([one?.stop(), two?.stop()]);
    await redis?.stop();
  });

  const listen = async (...pairs: Array<[StandaloneBroker, string]>) => {
    listeners = await Promise.all(pairs.map(([broker, account]) => Listener.on(broker.url, account)));
    return listeners;
  };

  it('an event published on either instance reaches the subscribers of both, once each, and Redis keeps nothing', async () => {
    const [onOne, onTwo] = await listen([one, 'host-a'], [two, 'host-b']);
    expect((await publish(one, 'host-a', 'f2b/sshd/ban', '203.0.113.1')).code).to.equal(0);
    expect((await publish(two, 'host-b', 'f2b/sshd/ban', '203.0.113.2')).code).to.equal(0);
    // a later event on the same path arrives after any late duplicate would have
    expect((await publish(one, 'host-a', 'f2b/sshd/ban', '203.0.113.3')).code).to.equal(0);
    for (const listener of [onOne!, onTwo!]) {
      await waitFor(() => listener.count('203.0.113.3') === 1, 'the last event on both instances');
      const events = listener.received.map((line) => JSON.parse(line.slice(line.indexOf(' ') + 1)) as { ip: string; origin: string });
      expect(events.map(({ ip, origin }) => `${ip} ${origin}`).sort()).to.deep.equal(['203.0.113.1 host-a', '203.0.113.2 host-b', '203.0.113.3 host-a']);
    }
    expect(await redis.cli('DBSIZE')).to.equal('0');
    expect(await redis.cli('INFO', 'keyspace')).not.to.match(/^db\d+:/m);
  });

  it("each instance applies the broker's rules itself: a forged origin or a foreign topic is refused and crosses nowhere", async () => {
    const [onOne, onTwo] = await listen([one, 'host-a'], [two, 'host-a']);
    await publish(two, 'host-b', 'f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.4', origin: 'host-a' }));
    await publish(two, 'host-b', 'other/topic', '203.0.113.5');
    await publish(one, 'host-a', 'f2b/sshd/ban', '203.0.113.6');
    await waitFor(() => onOne!.count('203.0.113.6') === 1 && onTwo!.count('203.0.113.6') === 1, 'the legitimate event on both');
    for (const listener of [onOne!, onTwo!]) expect(listener.received.join('\n')).not.to.match(/203\.0\.113\.[45]/);
    expect(two.process.logLines().map((line) => line.reason)).to.include.members(['bad-origin', 'bad-topic']);
  });

  it('with Redis down, each instance still serves its own clients and says so; events cross again once Redis is back, without a restart', async () => {
    const [onOne, onTwo] = await listen([one, 'host-a'], [two, 'host-b']);
    await redis.stopProcess();
    for (const broker of [one, two]) await waitFor(() => logCount(broker, /Redis is unreachable/) === 1, 'the instance to report Redis down');
    await publish(one, 'host-a', 'f2b/sshd/ban', '198.51.100.1');
    await waitFor(() => onOne!.count('198.51.100.1') === 1, 'local delivery on instance one while Redis is down');
    await redis.startProcess();
    for (const broker of [one, two]) await waitFor(() => logCount(broker, /connected to Redis/) === 2, 'the instance to reconnect to Redis');
    await publish(two, 'host-b', 'f2b/sshd/ban', '198.51.100.2');
    await waitFor(() => onOne!.count('198.51.100.2') === 1 && onTwo!.count('198.51.100.2') === 1, 'an event crossing after Redis returned');
    // the event published while Redis was down was not queued and replayed: `-f` heals such gaps
    expect(onTwo!.count('198.51.100.1')).to.equal(0);
    expect([one.process.alive, two.process.alive]).to.deep.equal([true, true]);
    expect(one.process.output).not.to.include(REDIS_PASSWORD);
  });

  it('an instance stops cleanly and starts again while Redis is down, and joins when it returns', async () => {
    await redis.stopProcess();
    try {
      await one.restart(); // throws unless the old process exited 0
      await waitFor(() => logCount(one, /Redis is unreachable/) === 1, 'the new process to report Redis down');
    } finally {
      await redis.startProcess();
    }
    await waitFor(() => logCount(one, /connected to Redis/) === 1, 'the new process to join the cluster');
    // Instance two lost Redis too (its third connection in this suite): an event it publishes
    // before it is back crosses nowhere, by design.
    await waitFor(() => logCount(two, /connected to Redis/) === 3, 'instance two to reconnect to Redis');
    const [onOne, onTwo] = await listen([one, 'host-a'], [two, 'host-b']);
    await publish(two, 'host-b', 'f2b/sshd/ban', '198.51.100.3');
    await waitFor(() => onOne!.count('198.51.100.3') === 1 && onTwo!.count('198.51.100.3') === 1, 'an event crossing to the restarted instance');
  });
});

describe('clustered hub over TLS (rediss://) with a password and a private CA', function () {
  this.timeout(120_000);
  let redis: PrivateRedis;
  let brokers: StandaloneBroker[] = [];

  after(async () => {
    await Promise.all(brokers.map((broker) => broker.stop()));
    await redis?.stop();
  });

  it('events cross instances, and the log never shows the password', async () => {
    const ca = await makeTestCa('redis-ca');
    const server = await ca.issue('redis', { cn: '127.0.0.1', ips: ['127.0.0.1'] });
    redis = await startRedis({ password: REDIS_PASSWORD, tls: { ...server, caFile: ca.caFile } });
    expect(redis.url).to.match(/^rediss:/);
    brokers = await startCluster(redis, [`cluster_redis_ca_file = ${ca.caFile}`]);
    const [onOne, onTwo] = await Promise.all([Listener.on(brokers[0]!.url, 'host-a'), Listener.on(brokers[1]!.url, 'host-b')]);
    try {
      await publish(brokers[0]!, 'host-a', 'f2b/web/ban', '192.0.2.77');
      await waitFor(() => onTwo.count('192.0.2.77') === 1 && onOne.count('192.0.2.77') === 1, 'the event on both instances');
      expect(brokers[0]!.process.output).not.to.include(REDIS_PASSWORD);
      expect(brokers[0]!.process.output).to.include('rediss://:***@127.0.0.1');
    } finally {
      await Promise.all([onOne.client.endAsync(), onTwo.client.endAsync()]);
    }
  });
});
