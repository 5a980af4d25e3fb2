import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { openFrame, sealFrame } from '../../broker/bus-frame.js';
import { MAX_SNAPSHOT_PART_BYTES } from '../../src/snapshot.js';
import { connectedClient } from '../support/mqtt-client.js';
import { startRedis } from '../support/redis.js';
import { startBrokerPair, startStandaloneBroker, type StandaloneBroker } from '../support/standalone-broker.js';
import { waitFor } from '../support/wait.js';
import { median, percentile } from './stats.js';

/** Flat out: QoS 1 publishes from one publisher with `window` in flight. */
const LOAD = { name: 'under load', events: 20_000, window: 100, intervalMs: 0 };
/** Paced at 200 events/s, one at a time: latency without queueing. */
const PACED = { name: 'paced, 200 events/s', events: 1_000, window: 1, intervalMs: 5 };
type Run = typeof LOAD;
/** One publisher sends everything: the per-client rate limit is not what this measures. */
const LIMITS = ['rate_limit = 1000000', 'rate_burst = 1000000'];

interface PathResult {
  path: string;
  eventsPerSecond: number;
  p50: number;
  p99: number;
}

/**
 * Publishes ban events to `publishTo` and measures, for each subscriber, events per second
 * (first publish to last arrival) and the latency of each event (publish to arrival).
 */
async function measure({ events, window, intervalMs }: Run, publishTo: StandaloneBroker, subscribers: Array<[string, StandaloneBroker]>): Promise<PathResult[]> {
  const sent = new Map<string, number>();
  const receivers = await Promise.all(
    subscribers.map(async ([path, broker]) => {
      const client = await connectedClient(broker.url);
      const latencies: number[] = [];
      let last = 0;
      client.on('message', (_topic, payload) => {
        last = performance.now();
        latencies.push(last - sent.get((JSON.parse(payload.toString()) as { ip: string }).ip)!);
      });
      await client.subscribeAsync('f2b/#', { qos: 1 });
      return { path, client, latencies, lastArrival: () => last };
    }),
  );
  const publisher = await connectedClient(publishTo.url);
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: window }, async () => {
      while (next < events) {
        const i = next++;
        if (intervalMs) await new Promise((resolve) => setTimeout(resolve, start + i * intervalMs - performance.now()));
        const ip = `10.${200 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
        sent.set(ip, performance.now());
        await publisher.publishAsync('f2b/bench/ban', JSON.stringify({ ip, origin: 'bench' }), { qos: 1 });
      }
    }),
  );
  await waitFor(() => receivers.every((receiver) => receiver.latencies.length >= events), 'every subscriber to receive every event', 300_000);
  await Promise.all([publisher, ...receivers.map((receiver) => receiver.client)].map((client) => client.endAsync()));
  return receivers.map(({ path, latencies, lastArrival }) => ({
    path,
    eventsPerSecond: (events / (lastArrival() - start)) * 1000,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  }));
}

/** Microseconds to sign one message of `bytes` and to check it, as the sending and the receiving instance do: median of five runs after a warm-up. */
function signingCost(bytes: number): { sealUs: number; openUs: number } {
  const key = randomBytes(32).toString('hex');
  const message = { sender: randomUUID(), seq: 1, time: Date.now(), topic: 'f2b/bench/ban', payload: randomBytes(bytes), qos: 1 as const, counter: 1 };
  const rounds = bytes > 4096 ? 1_000 : 20_000;
  let frame = sealFrame(key, message);
  const perMessageUs = (work: () => void) => {
    const start = performance.now();
    for (let i = 0; i < rounds; i++) work();
    return ((performance.now() - start) / rounds) * 1000;
  };
  const seal = () => (frame = sealFrame(key, message));
  const open = () => {
    if (!openFrame(key, frame).ok) throw new Error('a frame did not open');
  };
  perMessageUs(seal);
  perMessageUs(open);
  const runs = Array.from({ length: 5 }, () => [perMessageUs(seal), perMessageUs(open)] as const);
  return { sealUs: median(runs.map(([sealUs]) => sealUs)), openUs: median(runs.map(([, openUs]) => openUs)) };
}

/**
 * A clustered hub: events from a publisher on instance 1 to a subscriber on instance 1
 * (local delivery) and on instance 2 (through Redis), in the same run, against a lone
 * syncfail2ban-broker without Redis measured first as the baseline.
 */
export async function run(): Promise<void> {
  const lone = await startStandaloneBroker(LIMITS);
  const baseline = new Map<Run, PathResult>();
  try {
    for (const mode of [LOAD, PACED]) baseline.set(mode, (await measure(mode, lone, [['lone broker (no cluster)', lone]]))[0]!);
  } finally {
    await lone.stop();
  }
  const redis = await startRedis();
  const instances = await startBrokerPair(redis.url, LIMITS);
  let acrossP50 = 0;
  try {
    const [one, two] = instances;
    console.log('measured: QoS 1 ban events from one publisher on instance 1; syncfail2ban-broker and redis-server processes on this machine');
    for (const mode of [LOAD, PACED]) {
      const lonely = baseline.get(mode)!;
      const [within, across] = (await measure(mode, one, [['cluster, within instance 1', one], ['cluster, across (1 -> Redis -> 2)', two]])) as [PathResult, PathResult];
      console.log(`  ${mode.name}, ${mode.events} events (${mode.window} in flight):`);
      for (const { path, eventsPerSecond, p50, p99 } of [lonely, within, across]) {
        console.log(`    ${path.padEnd(36)} ${eventsPerSecond.toFixed(0).padStart(6)} events/s   latency p50 ${p50.toFixed(1).padStart(6)} ms   p99 ${p99.toFixed(1).padStart(6)} ms`);
      }
      console.log(`    ratio across / within instance: events/s ${(across.eventsPerSecond / within.eventsPerSecond).toFixed(2)}x, p50 ${(across.p50 / within.p50).toFixed(2)}x, p99 ${(across.p99 / within.p99).toFixed(2)}x`);
      console.log(`    ratio within a clustered instance / lone broker: events/s ${(within.eventsPerSecond / lonely.eventsPerSecond).toFixed(2)}x, p50 ${(within.p50 / lonely.p50).toFixed(2)}x`);
      if (mode === PACED) acrossP50 = across.p50;
    }
  } finally {
    await Promise.all(instances.map((instance) => instance.stop()));
    await redis.stop();
  }
  console.log('  the bus signature (HMAC-SHA256 with cluster_key), in this process: signing on the sending instance, checking on each receiving one');
  for (const [what, bytes] of [['an event (60 bytes)', 60], [`a snapshot part (${MAX_SNAPSHOT_PART_BYTES / 1024} KiB)`, MAX_SNAPSHOT_PART_BYTES]] as const) {
    const { sealUs, openUs } = signingCost(bytes);
    console.log(`    ${what.padEnd(28)} sign ${sealUs.toFixed(1).padStart(6)} µs   check ${openUs.toFixed(1).padStart(6)} µs   together ${(((sealUs + openUs) / 1000 / acrossP50) * 100).toFixed(2)}% of the paced p50 across instances`);
  }
}
