/**
 * Issue 25, item 2: releasing 300,000 holdings, and 200 empty snapshots beside them, never
 * block the event loop for long: a timer due every millisecond keeps firing throughout,
 * through the store's release, the snapshot of the store written meanwhile, and the sink's
 * queue of 300,000 unbans filling and draining. (The wall-clock figures are the bench's:
 * npm run bench -- fleet-state.)
 */
import { expect } from 'chai';
import { Batcher } from '../../../agent/sinks/batcher.js';
import { captureLog } from '../../support/capture-log.js';
import { waitFor } from '../../support/wait.js';
import { FleetHarness, addresses, parts, releasesDone } from './fleet-harness.js';

const HELD = 300_000;
/**
 * Generous: the release's slices and the snapshot's are 10 ms, the bench's target for a block
 * 50 ms; the process's CPU also counts its other threads' (the garbage collector's helpers,
 * the snapshot's write), which came to 102 ms in one turn of 292 ms with the machine at load
 * 27 (35 ms at most at load 10 to 16). Before the slices and the split tables, writing the
 * snapshot of the store took one turn of 0.5 s and more (536 ms at load 10), rebuilding a
 * table of 131,072 entries 60 to 75 ms.
 */
const LONGEST_BLOCK_MS = 200;

/**
 * Times a chain of 1 ms timers until stopped: how many fired, the longest wait between two
 * (wall time, which on a loaded machine includes the time the process was not scheduled), and
 * the longest turn the process itself took: the CPU it used between two timers, at most that
 * wall time (its other threads work beside the event loop's).
 */
function timerChain(): { stop(): { fired: number; longestWait: number; longestTurn: number } } {
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  let longestWait = 0;
  let longestTurn = 0;
  let fired = 0;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    const now = performance.now();
    const { user, system } = process.cpuUsage(lastCpu);
    longestWait = Math.max(longestWait, now - last);
    longestTurn = Math.max(longestTurn, Math.min(now - last, (user + system) / 1000));
    last = now;
    lastCpu = process.cpuUsage();
    fired += 1;
    timer = setTimeout(tick, 1);
  };
  timer = setTimeout(tick, 1);
  return {
    stop() {
      clearTimeout(timer);
      return { fired, longestWait, longestTurn };
    },
  };
}

describe('fleet state: the event loop while 300,000 holdings are released', function () {
  this.timeout(300_000);
  let harness: FleetHarness;
  beforeEach(async () => (harness = await FleetHarness.create()));
  afterEach(async () => harness.cleanUp());

  it(`[scale] an empty snapshot releasing 300,000, their unbans queued for a sink that takes them only afterwards: no turn of the event loop takes ${LONGEST_BLOCK_MS} ms of CPU`, async () => {
    const { fleet } = harness.start({ total: 2_000_000, perOrigin: HELD });
    for (const part of parts('host-x', addresses(0, HELD))) fleet.applySnapshotPart(part);
    // The sink's queue takes every unban of the release before the target takes any (a slow fail2ban).
    let released!: () => void;
    const releaseDone = new Promise<void>((resolve) => (released = resolve));
    let applied = 0;
    const target = async (batch: readonly unknown[]) => {
      await releaseDone;
      // A target answers on a later turn of the event loop, as a socket does.
      await new Promise((resolve) => setImmediate(resolve));
      applied += batch.length;
      return [];
    };
    const batcher = new Batcher({ name: 'slow target', apply: target }, captureLog().log, { windowMs: 1 });
    harness.forward = (changes) => {
      for (const change of changes) batcher.submit(change);
    };
    harness.submitted.length = 0;
    const chain = timerChain();
    for (const part of parts('host-x', [])) fleet.applySnapshotPart(part);
    await releasesDone(fleet, 120_000);
    expect(batcher.stats().backlog, 'the unbans waiting in the queue').to.be.greaterThan(HELD - 5_000);
    released();
    await waitFor(() => batcher.stats().backlog === 0, 'the sink to take every unban', 120_000, 5);
    const { fired, longestWait, longestTurn } = chain.stop();
    await batcher.stop(1_000);
    expect(applied).to.equal(HELD);
    expect(fired, 'timers fired between the slices').to.be.greaterThan(50);
    expect(longestTurn, `the longest turn of the event loop (${fired} timers fired, the longest wait ${longestWait.toFixed(0)} ms)`).to.be.below(LONGEST_BLOCK_MS);
  });

  it(`[scale] 200 empty snapshots from origins that hold nothing, beside 300,000 holdings: no turn of the event loop takes ${LONGEST_BLOCK_MS} ms of CPU`, async () => {
    const { fleet } = harness.start({ total: 2_000_000, perOrigin: HELD });
    for (const part of parts('host-x', addresses(0, HELD))) fleet.applySnapshotPart(part);
    const chain = timerChain();
    for (let i = 0; i < 200; i++) {
      for (const part of parts(`nobody-${i}`, [])) fleet.applySnapshotPart(part);
      // As they arrive from the broker: a turn of the event loop between two.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const { fired, longestWait, longestTurn } = chain.stop();
    expect(fleet.status().total).to.equal(HELD);
    expect(longestTurn, `the longest turn of the event loop (${fired} timers fired, the longest wait ${longestWait.toFixed(0)} ms)`).to.be.below(LONGEST_BLOCK_MS);
  });
});
