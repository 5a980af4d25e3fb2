/** Stale entries are swept once the queue holds this many more than twice what it held after the last sweep (or the live ones). */
const SWEEP_SLACK = 1_024;

/**
 * The holdings' ends in one ordered queue, a binary min-heap keyed by end: the next end is
 * known at once, and 100,000 leases cost one timer, not 100,000. An entry is an end, the
 * holder (an origin in a jail, `H`) and the address. A holding whose end moves (a later ban,
 * a prolong) is pushed again and its old entry stays behind: an entry that is no longer its
 * holding's end (`isCurrent`) is skipped when it comes up, and swept once the queue has
 * doubled since the last sweep, so it stays within about twice the leases held (`live`) at
 * linear cost. Kept in three parallel arrays, not one object per entry: 100,000 entries take
 * about 2.6 MB.
 */
export class LeaseQueue<H> {
  private ends: number[] = [];
  private holders: H[] = [];
  private addresses: string[] = [];
  private sweepAbove = SWEEP_SLACK;

  constructor(
    /** Whether `end` is still the holding's end (it may have moved, or the holding gone). */
    private readonly isCurrent: (end: number, holder: H, address: string) => boolean,
    /** How many holdings have an end now. */
    private readonly live: () => number,
  ) {}

  /** Entries, stale ones included. */
  get length(): number {
    return this.ends.length;
  }

  push(end: number, holder: H, address: string): void {
    if (this.ends.length > this.sweepAbove) {
      this.sweep();
      this.sweepAbove = 2 * Math.max(this.ends.length, this.live()) + SWEEP_SLACK;
    }
    this.ends.push(end);
    this.holders.push(holder);
    this.addresses.push(address);
    this.up(this.ends.length - 1);
  }

  /** The earliest end of a holding that has one; stale entries on top are dropped on the way. */
  next(): number | undefined {
    while (this.ends.length > 0 && !this.isCurrent(this.ends[0]!, this.holders[0]!, this.addresses[0]!)) this.removeTop();
    return this.ends[0];
  }

  /** Takes the entry with the earliest end, if that end is at or before `now`. */
  popDue(now: number): { end: number; holder: H; address: string } | undefined {
    const end = this.next();
    if (end === undefined || end > now) return undefined;
    const due = { end, holder: this.holders[0]!, address: this.addresses[0]! };
    this.removeTop();
    return due;
  }

  /** Keeps only the current entries, in a heap built anew (linear time). */
  private sweep(): void {
    const keep = this.ends.flatMap((end, index) => (this.isCurrent(end, this.holders[index]!, this.addresses[index]!) ? [index] : []));
    this.ends = keep.map((index) => this.ends[index]!);
    this.holders = keep.map((index) => this.holders[index]!);
    this.addresses = keep.map((index) => this.addresses[index]!);
    for (let index = (this.ends.length >> 1) - 1; index >= 0; index--) this.down(index);
  }

  private removeTop(): void {
    const last = this.ends.length - 1;
    this.swap(0, last);
    this.ends.pop();
    this.holders.pop();
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
    [this.holders[a], this.holders[b]] = [this.holders[b]!, this.holders[a]!];
    [this.addresses[a], this.addresses[b]] = [this.addresses[b]!, this.addresses[a]!];
  }
}
