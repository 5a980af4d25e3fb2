/** Checks running at once: scrypt runs on libuv's four threads, which file and DNS work share. */
const RUNNING = 2;
/** Waiting places for account names of [users], and (apart, so they cannot take those) for other names. */
const KNOWN_PLACES = 64;
const STRANGER_PLACES = 16;
/** Waiting checks one source address may hold in a lane. */
const PER_SOURCE = 4;
/** Source addresses whose failures are remembered (until they log in); beyond that the oldest is forgotten. */
const FAILURES_TRACKED = 10_000;

interface Waiting {
  start(): void;
  refuse(): void;
}

/**
 * One lane of waiting checks. The next check is taken from the source address with the
 * fewest failures so far (checks that failed, and attempts refused for want of a place;
 * sources in turn among equals), so an address that keeps guessing waits behind every
 * address that does not: a host logging in passes a crowd of guessing addresses after at
 * most one check. When the lane is full, a newcomer
 * takes the place of the newest check of the worst source (most failures, then most
 * waiting), if that source is worse than the newcomer's; that check is refused instead.
 */
class Lane {
  private readonly bySource = new Map<string, Waiting[]>();
  private size = 0;

  constructor(
    private readonly places: number,
    private readonly failures: (source: string) => number,
  ) {}

  get waiting(): number {
    return this.size;
  }

  add(source: string, waiting: Waiting): boolean {
    const own = this.bySource.get(source) ?? [];
    if (own.length >= PER_SOURCE) return false;
    if (this.size >= this.places && !this.evictWorse(source, own.length)) return false;
    own.push(waiting);
    this.bySource.set(source, own);
    this.size += 1;
    return true;
  }

  take(): Waiting | undefined {
    const source = this.pick((candidate, best) => this.failures(candidate) < this.failures(best));
    if (source === undefined) return undefined;
    const queue = this.bySource.get(source)!;
    this.bySource.delete(source);
    const next = queue.shift()!;
    if (queue.length > 0) this.bySource.set(source, queue); // to the back: sources in turn
    this.size -= 1;
    return next;
  }

  private evictWorse(source: string, holding: number): boolean {
    const rank = (candidate: string, count: number) => [this.failures(candidate), count] as const;
    const worst = this.pick((candidate, current) => compare(rank(candidate, this.bySource.get(candidate)!.length), rank(current, this.bySource.get(current)!.length)) > 0);
    if (worst === undefined || compare(rank(worst, this.bySource.get(worst)!.length), rank(source, holding + 1)) <= 0) return false;
    const queue = this.bySource.get(worst)!;
    queue.pop()!.refuse();
    if (queue.length === 0) this.bySource.delete(worst);
    this.size -= 1;
    return true;
  }

  /** The first source for which `better(source, best so far)` never fails. */
  private pick(better: (candidate: string, best: string) => boolean): string | undefined {
    let best: string | undefined;
    for (const source of this.bySource.keys()) if (best === undefined || better(source, best)) best = source;
    return best;
  }
}

function compare(a: readonly [number, number], b: readonly [number, number]): number {
  return a[0] - b[0] || a[1] - b[1];
}

/**
 * Where password checks wait: two lanes, the one for account names of [users] always served
 * first, so strangers trying names that do not exist never delay a host's login; within a
 * lane, addresses that have not been failing go first.
 */
export class LoginQueue {
  private readonly failed = new Map<string, number>();
  private readonly failures = (source: string) => this.failed.get(source) ?? 0;
  private readonly known = new Lane(KNOWN_PLACES, this.failures);
  private readonly strangers = new Lane(STRANGER_PLACES, this.failures);
  private running = 0;

  /** Runs the check in its turn; resolves null when there is no place for it (now, or later when a better claim takes it). */
  run(knownAccount: boolean, source: string, check: () => Promise<boolean>): Promise<boolean | null> {
    return new Promise<boolean | null>((resolve, reject) => {
      const start = () => {
        this.running += 1;
        check()
          .then((ok) => {
            this.noteResult(source, ok);
            resolve(ok);
          }, reject)
          .finally(() => {
            this.running -= 1;
            this.startNext();
          });
      };
      const refuse = () => {
        this.noteResult(source, false);
        resolve(null);
      };
      if (this.running < RUNNING && this.known.waiting + this.strangers.waiting === 0) start();
      else if (!(knownAccount ? this.known : this.strangers).add(source, { start, refuse })) refuse();
    });
  }

  private noteResult(source: string, ok: boolean): void {
    const count = this.failed.get(source) ?? 0;
    this.failed.delete(source);
    if (ok) return;
    this.failed.set(source, count + 1);
    if (this.failed.size > FAILURES_TRACKED) this.failed.delete(this.failed.keys().next().value!);
  }

  private startNext(): void {
    while (this.running < RUNNING) {
      const next = this.known.take() ?? this.strangers.take();
      if (!next) return;
      next.start();
    }
  }
}
