import { ShardedMap } from './big-maps.js';
import { LeaseQueue } from './lease-queue.js';

/** A holding whose end has come: its end in ms by this host's clock. */
export interface Lease {
  end: number;
  origin: string;
  jail: string;
  address: string;
}

/** One origin's leases in one jail: address -> end, kept relative to Leases' base. */
interface Holder {
  origin: string;
  jail: string;
  ends: ShardedMap<number>;
}

/**
 * The ends of the holdings that have one (leases), in milliseconds by this host's clock,
 * and the queue that orders them. A holding without an end is held until unbanned. Kept
 * by Holdings, which drops a holding's end with the holding.
 *
 * Ends are kept as offsets from when this store was made: within about 24 days of it they
 * are small integers, which V8 keeps inline, where a time since 1970 would take a heap
 * number of its own (1.6 MB more for 100,000 leases).
 */
export class Leases {
  private readonly base = Date.now();
  /** origin -> jail -> its leases */
  private readonly holders = new Map<string, Map<string, Holder>>();
  private count = 0;
  private readonly queue = new LeaseQueue<Holder>(
    (offset, holder, address) => holder.ends.get(address) === offset,
    () => this.count,
  );

  /** Holdings with an end. */
  get size(): number {
    return this.count;
  }

  /** The holding's end, or undefined: until unbanned (or not held). */
  end(origin: string, jail: string, address: string): number | undefined {
    const offset = this.holders.get(origin)?.get(jail)?.ends.get(address);
    return offset === undefined ? undefined : this.base + offset;
  }

  /**
   * A ban of a holding that lasts until `end` (undefined: until unbanned): the latest end
   * wins, and a holding that has none keeps none, unless it is `fresh` (just added). Returns
   * whether its end moved.
   */
  extend(origin: string, jail: string, address: string, end: number | undefined, fresh: boolean): boolean {
    const holder = this.holders.get(origin)?.get(jail);
    // A holding just added has no end yet (its removal took its end): no look into the table.
    const offset = fresh ? undefined : holder?.ends.get(address);
    if (end === undefined) return offset !== undefined && this.delete(origin, jail, address);
    if (offset === undefined ? !fresh : end <= this.base + offset) return false;
    this.setIn(holder ?? this.holder(origin, jail), address, end);
    return true;
  }

  /** Sets the holding's end as the store file says it (undefined: until unbanned). */
  set(origin: string, jail: string, address: string, end: number | undefined): void {
    if (end === undefined) this.delete(origin, jail, address);
    else this.setIn(this.holder(origin, jail), address, end);
  }

  private holder(origin: string, jail: string): Holder {
    let jails = this.holders.get(origin);
    if (!jails) this.holders.set(origin, (jails = new Map()));
    let holder = jails.get(jail);
    if (!holder) jails.set(jail, (holder = { origin, jail, ends: new ShardedMap() }));
    return holder;
  }

  private setIn(holder: Holder, address: string, end: number): void {
    const offset = end - this.base;
    const { size } = holder.ends;
    holder.ends.set(address, offset);
    if (holder.ends.size > size) this.count += 1;
    this.queue.push(offset, holder, address);
  }

  /** The holding goes, or is held until unbanned from now on; true when it had an end. */
  delete(origin: string, jail: string, address: string): boolean {
    const jails = this.holders.get(origin);
    const holder = jails?.get(jail);
    if (!holder?.ends.delete(address)) return false;
    this.count -= 1;
    if (holder.ends.size === 0) jails!.delete(jail);
    if (jails!.size === 0) this.holders.delete(origin);
    return true;
  }

  /** The earliest end. */
  next(): number | undefined {
    const offset = this.queue.next();
    return offset === undefined ? undefined : this.base + offset;
  }

  /** The lease with the earliest end, if that end is at or before `now`; it stays until its holding is released. */
  due(now: number): Lease | undefined {
    const due = this.queue.popDue(now - this.base);
    if (!due) return undefined;
    const { holder, address, end } = due;
    return { end: this.base + end, origin: holder.origin, jail: holder.jail, address };
  }

  /** Every lease, for the store file. */
  *entries(): IterableIterator<Lease> {
    for (const jails of this.holders.values()) {
      for (const { origin, jail, ends } of jails.values()) for (const [address, offset] of ends) yield { end: this.base + offset, origin, jail, address };
    }
  }
}
