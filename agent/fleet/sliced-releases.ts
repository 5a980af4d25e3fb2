/** The longest the agent releases at a stretch before the event loop takes its turn (events, timers, sockets). */
const SLICE_MS = 10;
/** Releases between two looks at the clock (a release, its sinks' changes included, takes tens of µs; more on a loaded machine). */
const CLOCK_EVERY = 32;

/** Releases holdings one at a time: `step()` looks at the next candidate, releases it when due, and is false once none is left. */
export interface ReleaseTask {
  step(): boolean;
}

/**
 * Releases any number of holdings without stalling the agent: tasks run in slices of at
 * most SLICE_MS, each slice one step of the fleet state (its sinks told at the end of the
 * slice), with a turn of the event loop between two slices, so a ban arriving during the
 * release of 300,000 waits for one slice, not for the release. One task per key (an origin
 * and jail): a new one replaces the running one.
 */
export class SlicedReleases {
  private readonly tasks = new Map<string, ReleaseTask>();
  private next: NodeJS.Immediate | undefined;

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
    clearImmediate(this.next);
    this.next = undefined;
  }

  private schedule(): void {
    this.next ??= setImmediate(() => this.slice());
  }

  private slice(): void {
    this.next = undefined;
    const until = performance.now() + SLICE_MS;
    this.inStep(() => {
      let steps = 0;
      for (const [key, task] of this.tasks) {
        for (;;) {
          if (!task.step()) {
            if (this.tasks.get(key) === task) this.tasks.delete(key);
            break;
          }
          if (++steps % CLOCK_EVERY === 0 && performance.now() >= until) return;
        }
      }
    });
    if (this.tasks.size > 0) this.schedule();
  }
}
