import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { encodeSnapshot } from '../../src/snapshot.js';
import { addressBlock } from '../support/fleet-helpers.js';
import { residentMb } from '../support/memory.js';
import { connectedClient } from '../support/mqtt-client.js';
import { freePortOn } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { measured, measuredBy, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';
import { median } from './stats.js';

/** Holdings of one origin on the attacked host, about as many as finding 2 released at once. */
const HELD = 300_000;
const BANS = 5;
const EMPTY_SNAPSHOTS = 200;
/** Targets of issue 25 (item 2): a legitimate ban within 1 s; the event loop never blocked longer than 50 ms at a time. */
const BAN_TARGET_MS = 1_000;
const BLOCK_TARGET_MS = 50;

interface Row {
  name: string;
  rssPeak: number;
  /** The legitimate bans' latencies, ms. */
  samples: number[];
  /** The longest ping answer meanwhile, ms. */
  longest: number;
  note: string;
}

/**
 * Issue 25, findings 2 and 3, on a host (bench-b, with the hub broker) whose store holds
 * 300,000 bans of one origin (host-x, jail web), all of them in its real fail2ban's sync jail:
 * how long a legitimate ban from another host (bench-a, a real agent) takes from the start of
 * its fail2ban action (syncfail2ban-client -a) to bench-b's sync jail (the applied batch's log
 * line), and the longest block of bench-b's agent's event loop meanwhile (the longest answer
 * to an MQTT ping of its embedded broker, pinged every 2 ms). Without attack (the baseline,
 * same run); while 200 empty complete snapshots from origins that hold nothing arrive (the
 * ban published halfway through each burst); and during the release of the 300,000 by
 * host-x's empty complete snapshot (the first ban published right after it, the others while
 * fail2ban is still unbanning).
 */
export async function run(): Promise<void> {
  const loadBefore = loadavg();
  const port = await freePortOn(['127.0.0.3']);
  const url = `mqtt://127.0.0.3:${port}`;
  const b = await SimHost.start({ name: 'bench-b', ip: '127.0.0.3', port, extra: [`max_holdings_per_origin = ${HELD}`, 'connection_timeout = 30'] });
  const a = await SimHost.start({ name: 'bench-a', ip: '127.0.0.2', port, brokerUrl: url, extra: ['connection_timeout = 10'] });
  const rows: Row[] = [];
  const release: string[] = [];
  try {
    // The store as a restart finds it: host-x's 300,000, which the start puts into the sync jail.
    const blocks = Math.ceil(HELD / 65_536);
    const held = Array.from({ length: blocks }, (_, i) => addressBlock(80 + i, Math.min(65_536, HELD - i * 65_536))).flat();
    await mkdir(join(b.dir, 'state'), { recursive: true });
    await writeFile(join(b.dir, 'state', 'holdings.snapshot'), held.map((address) => `+ host-x web ${address}\n`).join(''));
    await b.startAgent();
    const fleet = async () => part(await b.agentStatus(), 'fleet');
    const backlog = async () => measured(part(await b.agentStatus(), 'sink', 'fail2ban'), 'backlog');
    await waitFor(async () => (await backlog()) === 0 && (await b.banned('web-sync')).length === HELD, `the ${HELD} in bench-b's web-sync`, 1_800_000, 2_000);
    // The start's bulk work ends with the heap trim (full collections, one per turn): the start's, not the baseline's.
    await waitFor(async () => measured(part(await b.agentStatus(), 'memory'), 'trims') > 0, "bench-b's heap trimmed after the start", 60_000, 500);
    const attacker = await connectedClient(url);
    const publishEmpty = (origin: string) => attacker.publishAsync('f2b/web/snapshot', encodeSnapshot(origin, [])[0]!, { qos: 1 });
    let next = 0;
    /** One legitimate ban, from the start of its action to the batch line in bench-b's log. */
    const legitimateBan = async (): Promise<number> => {
      const from = b.requireAgent().output.length;
      const started = Date.now();
      const published = await a.client(['-a', 'sshd', 'banip', `198.51.100.${++next}`]);
      if (published.code !== 0) throw new Error(`the legitimate ban was not published: ${published.stderr}`);
      const line = await waitFor(() => appliedBan(b.requireAgent().output, from), 'the ban applied on bench-b', 120_000, 5);
      return Number(line.time) - started;
    };
    /**
     * Measures BANS legitimate bans, each with `round` (an attack that runs `ban` at the moment
     * it wants the ban to go); the pings are timed until `settled` too.
     */
    const measure = async (name: string, round: (ban: () => Promise<void>) => Promise<void>, note: () => Promise<string> = async () => '', settled = async () => {}) => {
      const answers = await probe(port);
      const samples: number[] = [];
      for (let i = 0; i < BANS; i++) await round(async () => void samples.push(await legitimateBan()));
      await settled();
      const longest = await answers.stop();
      rows.push({ name, rssPeak: (await residentMb(b.requireAgent().child.pid!)).peak, samples, longest, note: await note() });
    };

    await measure('no attack', (ban) => ban());

    let burst = 0;
    await measure(
      `${EMPTY_SNAPSHOTS} empty snapshots from origins holding nothing`,
      async (ban) => {
        burst += 1;
        const send = async (from: number, to: number) => {
          for (let i = from; i < to; i++) await publishEmpty(`nobody-${burst}-${i}`);
        };
        await send(0, EMPTY_SNAPSHOTS / 2);
        await Promise.all([send(EMPTY_SNAPSHOTS / 2, EMPTY_SNAPSHOTS), ban()]);
      },
      async () => {
        const wanted = BANS * EMPTY_SNAPSHOTS;
        const completed = async () => Object.entries(measuredBy(await fleet(), 'snapshot_complete')).filter(([key, done]) => key.startsWith('nobody-') && done === 1).length;
        await waitFor(async () => (await completed()) === wanted, `the ${wanted} empty snapshots complete on bench-b`, 60_000, 100);
        return `${wanted} of ${wanted} complete on bench-b`;
      },
    );

    let releaseSent = 0;
    let releaseSentAt = 0;
    let underWay = 0;
    await measure(
      `the release of ${HELD.toLocaleString('en')} (their origin's empty snapshot)`,
      async (ban) => {
        if (releaseSent === 0) {
          await publishEmpty('host-x');
          releaseSent = performance.now();
          releaseSentAt = Date.now();
        }
        await ban();
        // Still releasing: holdings left to release, or unbans still queued for fail2ban.
        if (measured(await fleet(), 'releasing') > 0 || (await backlog()) > 0) underWay += 1;
      },
      async () => `the release still under way after ${underWay} of ${BANS} bans`,
      // The agent's own work of the release is the store's: the pings go on until it is done.
      async () => {
        await waitFor(async () => measured(await fleet(), 'releasing') === 0, 'the release done in the store', 600_000, 50);
        release.push(`the agent released the ${HELD.toLocaleString('en')} from its store in ${((performance.now() - releaseSent) / 1000).toFixed(1)} s (in slices)`);
      },
    );
    await waitFor(async () => (await backlog()) === 0 && (await b.banned('web-sync')).length === 0, "host-x's addresses gone from bench-b's web-sync", 1_800_000, 1_000);
    release.push(`fail2ban's web-sync empty ${((performance.now() - releaseSent) / 1000).toFixed(1)} s after the snapshot`);
    // How long a ban could wait behind a batch of unbans: the time between two applied batches.
    const batches = b.requireAgent().logLines().filter((line) => String(line.msg).startsWith('applied ') && Number(line.time) >= releaseSentAt);
    const unbans = batches.filter((line) => Number(line.unbans) > 0).map((line) => Number(line.unbans));
    const gaps = batches.slice(1).map((line, i) => Number(line.time) - Number(batches[i]!.time));
    release.push(`fail2ban took them in ${unbans.length} batches of ${median(unbans)} unbans (median; at most ${Math.max(...unbans)}), one batch every ${median(gaps)} ms (median; the longest ${Math.max(...gaps)} ms)`);
    await attacker.endAsync();
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
  const loadAfter = loadavg();
  const baseline = rows[0]!;
  const baseLatency = median(baseline.samples);
  process.stdout.write(`load average ${loadBefore.map((load) => load.toFixed(2)).join(' ')} at the start, ${loadAfter.map((load) => load.toFixed(2)).join(' ')} at the end (2 cores)\n`);
  for (const { name, rssPeak, samples, longest, note } of rows) {
    const latency = median(samples);
    const worst = Math.max(...samples);
    process.stdout.write(
      `${name.padEnd(55)} legitimate ban median ${latency.toFixed(0).padStart(5)} ms (${(latency / baseLatency).toFixed(2)}x no attack), worst ${worst.toFixed(0).padStart(5)} ms (target ${BAN_TARGET_MS} ms: ${worst <= BAN_TARGET_MS ? 'met' : 'MISSED'}); ` +
        `longest event-loop block ${longest.toFixed(0).padStart(4)} ms (${(longest / baseline.longest).toFixed(2)}x; target ${BLOCK_TARGET_MS} ms: ${longest <= BLOCK_TARGET_MS ? 'met' : 'MISSED'}); agent RSS peak ${rssPeak.toFixed(0)} MB${note ? `; ${note}` : ''}\n`,
    );
  }
  for (const line of release) process.stdout.write(`${line}\n`);
}

/** The first batch with bans applied to sshd-sync in the agent's log from `from` on (only its new lines are read: the log of a release is long). */
function appliedBan(output: string, from: number): Record<string, unknown> | undefined {
  const lines = output.slice(from).split('\n').slice(0, -1);
  for (const text of lines) {
    if (!text.startsWith('{') || !text.includes('"sshd-sync"')) continue;
    const line = JSON.parse(text) as Record<string, unknown>;
    if (line.jail === 'sshd-sync' && Number(line.bans) > 0) return line;
  }
  return undefined;
}

/** Between two pings of `probe`: often enough to catch every block within this much, rarely enough to cost the agent nothing. */
const PING_GAP_MS = 2;

/**
 * Pings the agent's embedded broker every PING_GAP_MS from a worker thread (ping-probe.ts) until
 * stopped; resolves with the longest answer in ms: the longest the agent's event loop was
 * blocked, within PING_GAP_MS.
 */
async function probe(port: number): Promise<{ stop(): Promise<number> }> {
  const worker = new Worker(new URL('./ping-probe.js', import.meta.url), { workerData: { host: '127.0.0.3', port, localAddress: '127.0.9.1', gapMs: PING_GAP_MS } });
  const next = () => new Promise<unknown>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await next();
  return {
    async stop() {
      const longest = next();
      worker.postMessage('stop');
      return (await longest) as number;
    },
  };
}
