import { expect } from 'chai';
import type { MqttClient } from 'mqtt';
import { connectedClient } from '../support/mqtt-client.js';
import { startRedis, type PrivateRedis } from '../support/redis.js';
import { startBrokerPair, type StandaloneBroker } from '../support/standalone-broker.js';
import { waitFor } from '../support/wait.js';

/** Long enough for an instance to take a publish and answer it, far below the instance's own wait for Redis (2 s). */
const REDIS_PAUSED_MS = 500;

describe('clustered hub: a publish the instance acknowledged has already left it', function () {
  this.timeout(60_000);
  let redis: PrivateRedis;
  let one: StandaloneBroker;
  let two: StandaloneBroker;
  let publisher: MqttClient | undefined;
  let subscriber: MqttClient | undefined;

  before(async () => {
    redis = await startRedis();
    [one, two] = await startBrokerPair(redis.url);
  });

  after(async () => {
    redis?.process.child.kill('SIGCONT');
    await Promise.all([publisher?.endAsync(true), subscriber?.endAsync()]);
    await Promise.all([one?.stop(), two?.stop()]);
    await redis?.stop();
  });

  it('acknowledges a QoS 1 ban only once Redis took it, so a host on another instance gets it even if this instance dies right after the PUBACK', async () => {
    subscriber = await connectedClient(two.url);
    const received: string[] = [];
    subscriber.on('message', (_topic, payload) => received.push(payload.toString()));
    await subscriber.subscribeAsync('f2b/#', { qos: 1 });
    publisher = await connectedClient(one.url);

    // While Redis is paused, the ban cannot leave instance one: its PUBACK must wait.
    redis.process.child.kill('SIGSTOP');
    let ackedAt = 0;
    const acked = publisher.publishAsync('f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.7', origin: 'host-a' }), { qos: 1 }).then(() => {
      ackedAt = performance.now();
      // What a host has seen acknowledged must survive the instance's sudden death.
      one.process.child.kill('SIGKILL');
    });
    // Not a wait for a condition: the window in which an instance that acknowledges first would have answered.
    await new Promise((resolve) => setTimeout(resolve, REDIS_PAUSED_MS));
    const resumedAt = performance.now();
    redis.process.child.kill('SIGCONT');
    await acked;
    expect(ackedAt).to.be.greaterThan(resumedAt);
    await waitFor(() => received.length === 1, 'the ban on the subscriber of instance two');
    expect(JSON.parse(received[0]!)).to.include({ ip: '203.0.113.7', origin: 'host-a' });
  });
});
