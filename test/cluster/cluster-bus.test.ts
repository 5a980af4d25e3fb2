import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Message } from 'mqemitter';
import { pino } from 'pino';
import { sealFrame } from '../../broker/bus-frame.js';
import { BUS_CHANNEL, ClusterBus, MAX_CLOCK_SKEW_MS } from '../../broker/cluster.js';
import { startRedis, type PrivateRedis } from '../support/redis.js';
import { newClusterKey } from '../support/standalone-broker.js';
import { measured, measuredBy } from '../support/status.js';
import { waitFor } from '../support/wait.js';

describe('cluster bus: what an instance takes off Redis (a real redis-server, the bus in-process)', function () {
  this.timeout(60_000);
  const key = newClusterKey();
  let redis: PrivateRedis;
  let bus: ClusterBus;
  let injector: Redis;
  const received: string[] = [];

  before(async () => {
    redis = await startRedis();
    bus = new ClusterBus({ redisUrl: redis.url, key, log: pino({ level: 'silent' }) });
    await bus.start();
    await waitFor(() => measured(bus.status(), 'up') === 1, 'the bus to reach Redis');
    await new Promise<void>((resolve) => bus.on('f2b/#', (message: Message, done: () => void) => {
      received.push(String(message.payload));
      done();
    }, resolve));
    injector = new Redis(redis.url);
  });

  after(async () => {
    injector?.disconnect();
    await bus?.stop();
    await redis?.stop();
  });

  /** What another instance (one that holds the key) would send. */
  const frame = (sender: string, seq: number, time: number, ip: string) =>
    sealFrame(key, { sender, seq, time, topic: 'f2b/sshd/ban', payload: Buffer.from(ip), qos: 1, counter: seq });

  it("delivers each instance's messages once, in order; refuses a sequence number already taken and a time the clocks cannot explain, and says how to fix the clocks", async () => {
    const other = '0b7c2a5e-1f3d-4e6a-9b8c-7d6e5f4a3b2c';
    bus.emit({ cmd: 'publish', topic: 'f2b/sshd/ban', payload: Buffer.from('198.51.100.1'), qos: 1, brokerCounter: 1 } as Message); // this instance's own
    await injector.publish(BUS_CHANNEL, frame(other, 1, Date.now(), '203.0.113.1'));
    await injector.publish(BUS_CHANNEL, frame(other, 1, Date.now(), '203.0.113.2')); // a replay with its number
    await injector.publish(BUS_CHANNEL, frame('clock-behind', 1, Date.now() - 2 * MAX_CLOCK_SKEW_MS, '203.0.113.3'));
    await injector.publish(BUS_CHANNEL, frame(other, 2, Date.now(), '203.0.113.4'));
    await waitFor(() => received.includes('203.0.113.4'), 'the last message');
    // the own message once (its echo from Redis is dropped), then the other instance's two
    expect(received).to.deep.equal(['198.51.100.1', '203.0.113.1', '203.0.113.4']);
    const status = bus.status();
    expect(measuredBy(status, 'refused')).to.deep.equal({ 'cluster-replayed': 1, 'cluster-stale': 1 });
    expect(measured(status, 'received')).to.equal(2);
    expect(measured(status, 'sent')).to.equal(1);
    expect(status.problems).to.have.length(1);
    expect(status.problems[0]!.what).to.match(/^messages from another instance were refused as 60 s away from this clock \(more than 30 s\)/);
    expect(status.problems[0]!.fix).to.match(/synchronise the instances' clocks/);
  });
});
