import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { publishAll, SNAPSHOT_SPACING_MS, SNAPSHOT_WINDOW } from '../../cli/mqtt-publish.js';
import { encodeSnapshot, snapshotTopic } from '../../src/snapshot.js';
import { addressBlock, snapshotsOf } from '../support/fleet-helpers.js';
import { settledRss } from '../support/memory.js';
import { freePortOn } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { measured, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const LEASES = 100_000;
/** The ends are spread evenly from an hour to a day and an hour ahead. */
const FIRST_END_S = 3_600;
const SPREAD_S = 86_400;
const IDLE_S = 60;
/** Each kind is measured this many times, in turn with the other. */
const ROUNDS = 2;

/**
 * An agent holding 100,000 bans with ends spread over a day (one ordered queue and one
 * timer for all of them), against the same agent holding the same 100,000 until unbanned:
 * its RSS once steady after its heap trim, and the CPU it uses while idle for IDLE_S seconds.
 */
export async function run(): Promise<void> {
  const addresses = [...addressBlock(50, 65_536), ...addressBlock(51, LEASES - 65_536)];
  const bantimes = addresses.map((_, index) => FIRST_END_S + Math.floor((index * SPREAD_S) / LEASES));
  const runs: Array<[what: string, held: Held]> = [];
  for (let round = 0; round < ROUNDS; round++) {
    runs.push(['until unbanned (no ends)', await holding(addresses, undefined)]);
    runs.push([`${LEASES} leases, ends over 24 h`, await holding(addresses, bantimes)]);
  }
  console.log(`measured: one agent (sync jail in a real fail2ban) holding ${LEASES} bans from one snapshot, then idle for ${IDLE_S} s; ${ROUNDS} rounds`);
  for (const [what, held] of runs) {
    console.log(`  ${what.padEnd(34)} RSS ${held.rssMb.toFixed(0)} MB (JavaScript heap ${held.heapMb.toFixed(0)} MB), idle CPU ${held.cpuPercent.toFixed(2)}%, leases held: ${held.leases}`);
  }
  const mean = (leases: boolean, value: (held: Held) => number) => runs.filter(([, held]) => (held.leases > 0) === leases).reduce((sum, [, held]) => sum + value(held), 0) / ROUNDS;
  const [rss, heap, cpu] = [(held: Held) => held.rssMb, (held: Held) => held.heapMb, (held: Held) => held.cpuPercent].map((value) => [mean(false, value), mean(true, value)] as const) as Array<[number, number]>;
  console.log(`  mean, leases against no ends (the baseline): RSS ${rss![1].toFixed(0)} MB against ${rss![0].toFixed(0)} MB (${(rss![1] / rss![0]).toFixed(2)}x), heap +${(heap![1] - heap![0]).toFixed(1)} MB, idle CPU ${cpu![1].toFixed(2)}% against ${cpu![0].toFixed(2)}% (${(cpu![1] / cpu![0]).toFixed(2)}x)`);
}

interface Held {
  rssMb: number;
  heapMb: number;
  cpuPercent: number;
  leases: number;
}

/** A fresh host whose agent takes one snapshot of `addresses` (with `bantimes`, or none) from another origin; its steady RSS and idle CPU. */
async function holding(addresses: string[], bantimes: number[] | undefined): Promise<Held> {
  const ip = '127.0.0.2';
  const port = await freePortOn([ip]);
  const host = await SimHost.start({ name: 'bench-leases', ip, port });
  try {
    await host.startAgent();
    const parts = encodeSnapshot('bench-origin', addresses, bantimes);
    await publishAll(`mqtt://${ip}:${port}`, parts.map((payload) => ({ topic: snapshotTopic('web'), payload })), { timeoutMs: 120_000, window: SNAPSHOT_WINDOW, spacingMs: SNAPSHOT_SPACING_MS });
    await waitFor(
      async () => (await snapshotsOf(host)).some((s) => s.complete) && measured(part(await host.agentStatus(), 'sink', 'fail2ban'), 'backlog') === 0,
      'the snapshot applied',
      600_000,
      200,
    );
    const pid = host.requireAgent().child.pid!;
    // The agent gives the ingest's garbage back after it: measured after that, both kinds alike.
    await waitFor(async () => measured(part(await host.agentStatus(), 'memory'), 'trims') > 0, 'the heap trim after the snapshot', 120_000, 500);
    const rssMb = await settledRss(pid);
    const cpuStart = await cpuSeconds(pid);
    const wallStart = Date.now();
    // A measuring window, not a wait for a condition: the agent is left alone for IDLE_S seconds.
    await sleep(IDLE_S * 1000);
    const cpuPercent = ((await cpuSeconds(pid)) - cpuStart) / ((Date.now() - wallStart) / 1000) * 100;
    const status = await host.agentStatus();
    return { rssMb, cpuPercent, leases: measured(part(status, 'fleet'), 'leases'), heapMb: measured(part(status, 'memory'), 'heap') / 2 ** 20 };
  } finally {
    await host.stop();
  }
}

/** User and system CPU time of a process so far, from /proc (clock ticks of 1/100 s). */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  // utime and stime: fields 14 and 15 of stat, 12 and 13 after "pid (comm) ".
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
