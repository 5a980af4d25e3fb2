/** Stale entries are looked at once the queue holds this many more than twice the live ones (or than it held at the last look). */
const SWEEP_SLACK = 1_024;

/**
 * The holdings' ends in one ordered queue, a binary min-heap keyed by end: the next end is
 * known at once, and 100,000 leases cost one timer, not 100,000. An entry is an end, the
 * holder (an origin in a jail, `H`) and the address. A holding whose end moves (a later ban,
 * a prolong) is pushed again and its old entry stays behind: an entry that is no longer its
 * holding's end (`isCurrent`) is skipped when it comes up, and swept once stale entries
 * outnumber the live ones (`live`), so the queue stays within about twice the leases held at
 * linear cost; while leases are only added, nothing is swept. Kept in three parallel arrays, not one object per entry: 100,000 entries take
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
      // Only once stale entries outnumber live ones: while leases are only added (a snapshot), there are none.
      if (this.ends.length > 2 * this.live()) this.sweep();
      this.sweepAbove = Math.max(this.ends.length, 2 * this.live()) + SWEEP_SLACK;
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
    let kept = 0;
    for (let index = 0; index < this.ends.length; index++) {
      if (!this.isCurrent(this.ends[index]!, this.holders[index]!, this.addresses[index]!)) continue;
      this.ends[kept] = this.ends[index]!;
      this.holders[kept] = this.holders[index]!;
      this.addresses[kept] = this.addresses[index]!;
      kept += 1;
    }
    this.ends.length = this.holders.length = this.addresses.length = kept;
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
