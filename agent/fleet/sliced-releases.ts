/** The longest the agent releases at a stretch before the event loop takes its turn (events, timers, sockets). */
const SLICE_MS = 5;
/** Releases between two looks at the clock (a release takes a few µs; more on a loaded machine). */
const CLOCK_EVERY = 16;

/** Releases holdings one at a time: `step()` looks at the next candidate, releases it when due, and is false once none is left. */
export interface ReleaseTask {
  step(): boolean;
}

/**
 * Releases any number of holdings without stalling the agent: tasks run in slices of at
 * most SLICE_MS, each slice one step of the fleet state (its sinks told at the end of the
 * slice, within the budget), with a turn of the event loop between two slices, so a ban
 * arriving during the release of 300,000 waits for one slice, not for the release. One task
 * per key (an origin and jail): a new one replaces the running one.
 */
export class SlicedReleases {
  private readonly tasks = new Map<string, ReleaseTask>();
  private next: NodeJS.Timeout | undefined;
  /**
   * The ms per release of what the end of the last slice took (the step's journal lines and its
   * sinks' changes): as long again as the releases themselves, so the slice's budget keeps room for it.
   */
  private closingPerRelease = 0;

  /** `inStep` runs a slice as one step of the fleet state. */
  constructor(private readonly inStep: (slice: () => void) => void) {}

  set(key: string, task: ReleaseTask): void {
    this.tasks.set(key, task);
    this.schedule();
  }

  /** No task under way. */
  get idle(): boolean {
    return this.tasks.size === 0;
  }

  get(key: string): ReleaseTask | undefined {
    return this.tasks.get(key);
  }

  delete(key: string): void {
    this.tasks.delete(key);
  }

  entries(): IterableIterator<[string, ReleaseTask]> {
    return this.tasks.entries();
  }

  /** Stops releasing; what was not released stays for the store file to say (see FleetState.close). */
  stop(): void {
    clearTimeout(this.next);
    this.next = undefined;
  }

  private schedule(): void {
    // A timer, not setImmediate: what the sockets brought meanwhile is handled, and its answers
    // written (the embedded broker writes at setImmediate, see broker/coalesce-writes.ts), before the next slice.
    this.next ??= setTimeout(() => this.slice(), 0);
  }

  private slice(): void {
    this.next = undefined;
    const until = performance.now() + SLICE_MS;
    let steps = 0;
    let stepped = 0;
    this.inStep(() => {
      for (const [key, task] of this.tasks) {
        for (;;) {
          if (!task.step()) {
            if (this.tasks.get(key) === task) this.tasks.delete(key);
            break;
          }
          if (++steps % CLOCK_EVERY !== 0) continue;
          stepped = performance.now();
          // Room left for the end of the slice, at what it cost per release last time.
          if (stepped + steps * this.closingPerRelease >= until) return;
        }
      }
      stepped = performance.now();
    });
    if (steps > 0) this.closingPerRelease = (performance.now() - stepped) / steps;
    if (this.tasks.size > 0) this.schedule();
  }
}
