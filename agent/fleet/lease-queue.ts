/** A holding whose end has come. */
export interface Lease {
  end: number;
  origin: string;
  jail: string;
  address: string;
}

/** Stale entries are swept once the queue holds this many more than twice what it held after the last sweep (or the live ones). */
const SWEEP_SLACK = 1_024;

/**
 * The holdings' ends in one ordered queue, a binary min-heap keyed by end: the next end is
 * known at once, and 100,000 leases cost one timer, not 100,000. A holding whose end moves
 * (a later ban, a prolong) is pushed again and its old entry stays behind: an entry that is
 * no longer its holding's end (`isCurrent`) is skipped when it comes up, and swept once
 * the queue has doubled since the last sweep, so it stays within about twice the leases
 * held (`live`) at linear cost. Kept in four parallel arrays, not one object per entry: 100,000 entries
 * take about 3 MB.
 */
export class LeaseQueue {
  private ends: number[] = [];
  private origins: string[] = [];
  private jails: string[] = [];
  private addresses: string[] = [];
  private sweepAbove = SWEEP_SLACK;

  constructor(
    /** Whether `end` is still the holding's end (it may have moved, or the holding gone). */
    private readonly isCurrent: (end: number, origin: string, jail: string, address: string) => boolean,
    /** How many holdings have an end now. */
    private readonly live: () => number,
  ) {}

  /** Entries, stale ones included. */
  get length(): number {
    return this.ends.length;
  }

  push(end: number, origin: string, jail: string, address: string): void {
    if (this.ends.length > this.sweepAbove) {
      this.sweep();
      this.sweepAbove = 2 * Math.max(this.ends.length, this.live()) + SWEEP_SLACK;
    }
    this.ends.push(end);
    this.origins.push(origin);
    this.jails.push(jail);
    this.addresses.push(address);
    this.up(this.ends.length - 1);
  }

  /** The earliest end of a holding that has one; stale entries on top are dropped on the way. */
  next(): number | undefined {
    while (this.ends.length > 0 && !this.isCurrent(this.ends[0]!, this.origins[0]!, this.jails[0]!, this.addresses[0]!)) this.removeTop();
    return this.ends[0];
  }

  /** Takes the lease with the earliest end, if that end is at or before `now`. */
  popDue(now: number): Lease | undefined {
    const end = this.next();
    if (end === undefined || end > now) return undefined;
    const lease = { end, origin: this.origins[0]!, jail: this.jails[0]!, address: this.addresses[0]! };
    this.removeTop();
    return lease;
  }

  /** Keeps only the current entries, in a heap built anew (linear time). */
  private sweep(): void {
    const keep = this.ends.flatMap((end, index) => (this.isCurrent(end, this.origins[index]!, this.jails[index]!, this.addresses[index]!) ? [index] : []));
    this.ends = keep.map((index) => this.ends[index]!);
    this.origins = keep.map((index) => this.origins[index]!);
    this.jails = keep.map((index) => this.jails[index]!);
    this.addresses = keep.map((index) => this.addresses[index]!);
    for (let index = (this.ends.length >> 1) - 1; index >= 0; index--) this.down(index);
  }

  private removeTop(): void {
    const last = this.ends.length - 1;
    this.swap(0, last);
    this.ends.pop();
    this.origins.pop();
    this.jails.pop();
    this.addresses.pop();
    this.down(0);
  }

  private up(index: number): void {
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (this.ends[parent]! <= this.ends[index]!) return;
      this.swap(parent, index);
      index = parent;
    }
  }

  private down(index: number): void {
    const length = this.ends.length;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) return;
      const right = left + 1;
      const child = right < length && this.ends[right]! < this.ends[left]! ? right : left;
      if (this.ends[index]! <= this.ends[child]!) return;
      this.swap(index, child);
      index = child;
    }
  }

  private swap(a: number, b: number): void {
    [this.ends[a], this.ends[b]] = [this.ends[b]!, this.ends[a]!];
    [this.origins[a], this.origins[b]] = [this.origins[b]!, this.origins[a]!];
    [this.jails[a], this.jails[b]] = [this.jails[b]!, this.jails[a]!];
    [this.addresses[a], this.addresses[b]] = [this.addresses[b]!, this.addresses[a]!];
  }
}
