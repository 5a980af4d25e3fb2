import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
import { counter, gauge, type AgentStatus, type PartStatus } from '../../src/status.js';
import type { Logger } from '../../src/log.js';
import type { Part } from '../../src/part.js';

/** How often the heap's size is looked at. */
const CHECK_MS = 2_000;
/** Growth since the last trim that is worth full collections (~10 ms each at 20 MB live). */
const GROWTH_BYTES = 8 * 1024 * 1024;
/** A trim collects again while a collection still shrank the heap by this much… */
const SHRINK_BYTES = 1024 * 1024;
/** …up to this many times. */
const MAX_COLLECTIONS = 4;

/**
 * Gives memory back after bulk work. V8 collects its old generation only when it nears a
 * limit, so an agent that falls idle after applying a snapshot of 100,000 addresses would
 * keep that work's garbage for good (~70 MB of it). Once the heap has grown by GROWTH_BYTES
 * since the last trim, and the work is done (no sink has a backlog, the heap stopped
 * growing), this runs full collections while they shrink the heap: the first frees, the
 * next compact the pages the first left half empty (two or three in all).
 *
 * `gc` exists when node runs with --expose-gc, or once applyMemoryFlags (v8-flags.ts) made it,
 * as the agent does at start; without it the trim is off and status says so.
 */
export class HeapTrim implements Part {
  /** The heap's size after the last trim, or less when V8 shrank it since. */
  private floor: number;
  private last: number;
  private trims = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private collecting = false;
  private trim: Promise<void> = Promise.resolve();

  constructor(
    private readonly report: () => AgentStatus,
    private readonly log: Logger,
    private readonly gc: (() => void) | undefined = globalThis.gc,
    private readonly heapSize: () => number = () => getHeapStatistics().total_heap_size,
  ) {
    this.floor = this.last = heapSize();
  }

  async start(): Promise<void> {
    if (this.gc) this.timer = setInterval(() => this.check(), CHECK_MS).unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.trim;
  }

  /** The trim under way, or the last one. */
  get trimming(): Promise<void> {
    return this.trim;
  }

  /** True when it started a trim (`trimming` says when it ends). */
  check(): boolean {
    if (this.collecting) return false;
    const size = this.heapSize();
    const settled = size === this.last;
    this.last = size;
    this.floor = Math.min(this.floor, size);
    if (!this.gc || !settled || size < this.floor + GROWTH_BYTES || this.busy()) return false;
    this.trim = this.collect(this.gc, size);
    return true;
  }

  /**
   * Full collections while they shrink the heap, one per turn of the event loop: each stops the
   * agent for as long as it takes (tens of ms with 300,000 holdings), so a ban arriving meanwhile
   * waits for one, not for all.
   */
  private async collect(gc: () => void, size: number): Promise<void> {
    this.collecting = true;
    let heap = size;
    for (let collections = 0; collections < MAX_COLLECTIONS; collections += 1) {
      if (collections > 0) {
        // A timer: the sockets' answers (written at setImmediate) go out between two collections.
        await new Promise((resolve) => setTimeout(resolve, 0));
        if (this.stopped || this.busy()) break;
      }
      gc();
      const previous = heap;
      heap = this.floor = this.last = this.heapSize();
      if (previous - heap < SHRINK_BYTES) break;
    }
    this.collecting = false;
    this.trims += 1;
    this.log.debug({ heapMb: Math.round(size / 2 ** 20), trimmedMb: Math.round(heap / 2 ** 20) }, 'heap trimmed after bulk work');
  }

  status(): PartStatus {
    return {
      kind: 'memory',
      problems: [],
      measures: {
        heap: { ...gauge('size of the JavaScript heap', this.heapSize()), unit: 'bytes' },
        trims: counter('trims done after bulk work (full collections, to give its memory back)', this.trims),
        young_generation: { ...gauge("size of V8's young generation (2 MB with the agent's memory flags, up to 32 MB without)", youngGeneration()), unit: 'bytes' },
      },
      details: { trim: this.gc ? 'after bulk work' : 'off: node runs without --expose-gc (the installed syncfail2ban passes it)' },
    };
  }

  /** Work under way: a part (a sink, the bridge) with changes waiting. */
  private busy(): boolean {
    return this.report().parts.some(({ measures: { backlog } }) => backlog !== undefined && 'value' in backlog && backlog.value > 0);
  }
}

function youngGeneration(): number {
  return getHeapSpaceStatistics().find(({ space_name }) => space_name === 'new_space')?.space_size ?? 0;
}
