import { type Lease, LeaseQueue } from './lease-queue.js';

/**
 * The ends of the holdings that have one (leases), in milliseconds by this host's clock,
 * and the queue that orders them. A holding without an end is held until unbanned. Kept
 * by Holdings, which drops a holding's end with the holding.
 */
export class Leases {
  /** origin -> jail -> address -> end */
  private readonly ends = new Map<string, Map<string, Map<string, number>>>();
  private count = 0;
  private readonly queue = new LeaseQueue(
    (end, origin, jail, address) => this.end(origin, jail, address) === end,
    () => this.count,
  );

  /** Holdings with an end. */
  get size(): number {
    return this.count;
  }

  /** The holding's end, or undefined: until unbanned (or not held). */
  end(origin: string, jail: string, address: string): number | undefined {
    return this.ends.get(origin)?.get(jail)?.get(address);
  }

  /**
   * A ban of a holding that lasts until `end` (undefined: until unbanned): the latest end
   * wins, and a holding that has none keeps none, unless it is `fresh` (just added). Returns
   * whether its end moved.
   */
  extend(origin: string, jail: string, address: string, end: number | undefined, fresh: boolean): boolean {
    const current = this.end(origin, jail, address);
    if (end === undefined) return current !== undefined && this.delete(origin, jail, address);
    if (current === undefined ? !fresh : end <= current) return false;
    this.set(origin, jail, address, end);
    return true;
  }

  /** Sets the holding's end as the store file says it (undefined: until unbanned). */
  set(origin: string, jail: string, address: string, end: number | undefined): void {
    if (end === undefined) {
      this.delete(origin, jail, address);
      return;
    }
    let jails = this.ends.get(origin);
    if (!jails) this.ends.set(origin, (jails = new Map()));
    let addresses = jails.get(jail);
    if (!addresses) jails.set(jail, (addresses = new Map()));
    if (!addresses.has(address)) this.count += 1;
    addresses.set(address, end);
    this.queue.push(end, origin, jail, address);
  }

  /** The holding goes, or is held until unbanned from now on; true when it had an end. */
  delete(origin: string, jail: string, address: string): boolean {
    const jails = this.ends.get(origin);
    const addresses = jails?.get(jail);
    if (!addresses?.delete(address)) return false;
    this.count -= 1;
    if (addresses.size === 0) jails!.delete(jail);
    if (jails!.size === 0) this.ends.delete(origin);
    return true;
  }

  /** The earliest end. */
  next(): number | undefined {
    return this.queue.next();
  }

  /** The lease with the earliest end, if that end is at or before `now`; it stays until its holding is released. */
  due(now: number): Lease | undefined {
    return this.queue.popDue(now);
  }

  /** Every lease, for the store file. */
  *entries(): IterableIterator<Lease> {
    for (const [origin, jails] of this.ends) for (const [jail, addresses] of jails) for (const [address, end] of addresses) yield { end, origin, jail, address };
  }
}
