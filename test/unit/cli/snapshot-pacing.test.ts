import { expect } from 'chai';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { startBroker } from '../../../broker/broker.js';
import { Pacing, publishAll, SNAPSHOT_SPACING_MS, SNAPSHOT_WINDOW, snapshotBurstBytes } from '../../../cli/mqtt-publish.js';
import { DEFAULT_BROKER_LIMITS } from '../../../src/config-security.js';
import { encodeSnapshot, MAX_SNAPSHOT_PART_BYTES, snapshotTopic } from '../../../src/snapshot.js';
import { connectedClient } from '../../support/mqtt-client.js';
import { freePort } from '../../support/ports.js';
import { waitFor } from '../../support/wait.js';

const KIB = 1024;
const DEFAULT_QUEUE = DEFAULT_BROKER_LIMITS.queueBytesPerClient;

/** When each message of `sizes` goes, if every one is sent as soon as Pacing allows (ms from the first). */
function schedule(pacing: Pacing, sizes: number[]): number[] {
  let now = 0;
  return sizes.map((size) => {
    now = Math.max(now, now + pacing.wait(size, now));
    pacing.sent(size, now);
    return now;
  });
}

/** 100,000 IPv4 bans, each with its time left (an hour and less), as -f encodes them. */
function largeSnapshot(): string[] {
  const addresses = Array.from({ length: 100_000 }, (_, i) => `10.${70 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`);
  return encodeSnapshot('host-a', addresses, addresses.map((_, i) => 3600 - (i % 3600)));
}

describe('-f paces snapshot parts: a burst within half a subscriber queue, then ten parts a second', () => {
  it('without a burst, every part goes SNAPSHOT_SPACING_MS after the one before', () => {
    expect(schedule(new Pacing(SNAPSHOT_SPACING_MS), [64 * KIB, 64 * KIB, 10, 64 * KIB])).to.deep.equal([0, 100, 200, 300]);
  });

  it('the parts that fit in the burst go at once; from the first that does not, one every SNAPSHOT_SPACING_MS', () => {
    const sizes = Array.from({ length: 10 }, () => 64 * KIB);
    expect(schedule(new Pacing(SNAPSHOT_SPACING_MS, 4 * 64 * KIB), sizes)).to.deep.equal([0, 0, 0, 0, 100, 200, 300, 400, 500, 600]);
    // A part larger than what is left of the burst ends it, even when a smaller one would still fit.
    expect(schedule(new Pacing(SNAPSHOT_SPACING_MS, 100 * KIB), [64 * KIB, 64 * KIB, 1 * KIB])).to.deep.equal([0, 100, 200]);
  });

  it('the burst is half the per-client queue of this host\'s broker (mq_max_queued_kib), never more than half the default', () => {
    expect(snapshotBurstBytes(DEFAULT_QUEUE)).to.equal(DEFAULT_QUEUE / 2);
    expect(snapshotBurstBytes(1024 * KIB)).to.equal(512 * KIB);
    expect(snapshotBurstBytes(64 * 1024 * KIB)).to.equal(DEFAULT_QUEUE / 2);
  });

  it('a snapshot of 100,000 IPv4 bans with their times goes in one burst at the default queue', () => {
    const parts = largeSnapshot();
    const waits = schedule(new Pacing(SNAPSHOT_SPACING_MS, snapshotBurstBytes(DEFAULT_QUEUE)), parts.map((part) => Buffer.byteLength(part)));
    expect(parts.length).to.be.above(20);
    expect(waits.every((at) => at === 0), `${parts.length} parts of at most ${MAX_SNAPSHOT_PART_BYTES} bytes`).to.equal(true);
  });

  for (const queueKib of [DEFAULT_QUEUE / KIB, 256]) {
    it(`a subscriber that reads nothing while the burst comes still gets every part: the broker drops none (real broker, mq_max_queued_kib ${queueKib})`, async function () {
      this.timeout(60_000);
      const queueBytes = queueKib * KIB;
      const broker = await startBroker({
        host: '127.0.0.1',
        port: await freePort(),
        log: pino({ level: 'silent' }),
        security: { users: new Map(), admins: new Set(), limits: { ...DEFAULT_BROKER_LIMITS, queueBytesPerClient: queueBytes } },
        rateLimit: { perSecond: 200, burst: 20_000 },
      });
      const url = `mqtt://127.0.0.1:${broker.port}`;
      let subscriber: MqttClient | undefined;
      try {
        subscriber = await connectedClient(url);
        const received = new Set<number>();
        subscriber.on('message', (_topic, payload) => received.add((JSON.parse(payload.toString()) as { part: number }).part));
        await subscriber.subscribeAsync(snapshotTopic('web'), { qos: 1 });
        let arrived = 0;
        broker.aedes.on('publish', (_packet, client) => (arrived += client ? 1 : 0));
        const parts = largeSnapshot();
        const burstBytes = snapshotBurstBytes(queueBytes);
        const burstParts = schedule(new Pacing(SNAPSHOT_SPACING_MS, burstBytes), parts.map((part) => Buffer.byteLength(part))).filter((at) => at === 0).length;
        // A subscriber busy while the burst comes: its socket is not read until the broker has taken every part of it.
        subscriber.stream.pause();
        const published = publishAll(url, parts.map((payload) => ({ topic: snapshotTopic('web'), payload })), { timeoutMs: 30_000, window: SNAPSHOT_WINDOW, spacingMs: SNAPSHOT_SPACING_MS, burstBytes });
        await waitFor(() => arrived >= burstParts, `the burst's ${burstParts} part(s) at the broker`, 30_000, 5);
        subscriber.stream.resume();
        await published;
        await waitFor(() => received.size === parts.length || broker.queues().dropped > 0, 'every part at the subscriber, or a drop', 30_000);
        expect(broker.queues().dropped, 'parts the broker dropped for the subscriber').to.equal(0);
        expect(received.size).to.equal(parts.length);
      } finally {
        await subscriber?.endAsync(true);
        await broker.close();
      }
    });
  }
});
