import { flood, floodJunk, manySubscriptions, offlineSessions, stalledSubscriber } from '../support/broker-attacks.js';
import { residentMb } from '../support/memory.js';
import { freePortOn } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';
import { median } from './stats.js';

const BANS = 5;

/**
 * What the attacks of issue 11 cost the attacked host: its agent's resident memory, and how
 * long a legitimate ban from another host takes from the broker's acknowledgement to the
 * attacked host's sync jail, during each attack and without one (the baseline, same run).
 */
export async function run(): Promise<void> {
  const port = await freePortOn(['127.0.0.3']);
  const url = `mqtt://127.0.0.3:${port}`;
  const target = { host: '127.0.0.3', port };
  const b = await SimHost.start({ name: 'bench-b', ip: '127.0.0.3', port });
  const a = await SimHost.start({ name: 'bench-a', ip: '127.0.0.2', port, brokerUrl: url });
  await b.startAgent();
  await a.startAgent();
  let next = 0;
  const applied = () => b.requireAgent().logLines().filter((line) => line.jail === 'sshd-sync' && Number(line.bans) > 0);
  // From the broker's acknowledgement (the client's exit) to the agent's log line for the batch.
  const banLatency = async () => {
    const samples: number[] = [];
    for (let i = 0; i < BANS; i++) {
      const before = applied().length;
      const published = await a.client(['-a', 'sshd', 'banip', `198.51.100.${++next}`]);
      const acknowledged = Date.now();
      if (published.code !== 0) throw new Error(published.stderr);
      const line = await waitFor(() => applied()[before], 'the ban applied on bench-b', 30_000, 5);
      samples.push(Math.max(0, Number(line.time) - acknowledged));
    }
    return median(samples);
  };
  const rows: Array<[string, number, number, number]> = [];
  const measure = async (name: string, during: Promise<unknown> = Promise.resolve()) => {
    const latency = await banLatency();
    await during;
    const memory = await residentMb(b.requireAgent().child.pid!);
    rows.push([name, memory.now, memory.peak, latency]);
  };
  try {
    await measure('no attack');
    await offlineSessions(target, 2_000);
    await measure('2,000 persistent sessions + 20,000 events', flood(url, '127.0.2.1', 20_000));
    const subscriber = await manySubscriptions({ ...target, localAddress: '127.0.3.1' }, 100_000);
    await measure('100,000 subscriptions on one connection');
    await subscriber.session.close();
    const stalled = await stalledSubscriber({ ...target, localAddress: '127.0.4.1' });
    await measure('a subscriber that stops reading + 20,000 events', flood(url, '127.0.2.2', 20_000, floodJunk));
    await stalled.close();
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
  const [, , , baseline] = rows[0]!;
  for (const [name, now, peak, latency] of rows) {
    process.stdout.write(`${name.padEnd(50)} agent RSS ${now.toFixed(0).padStart(4)} MB (peak ${peak.toFixed(0)} MB), legitimate ban ${latency.toFixed(0).padStart(5)} ms (${(latency / baseline).toFixed(2)}x no attack)\n`);
  }
}
