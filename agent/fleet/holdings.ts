import { SegmentedMap, ShardedMap, ShardedSet, type ReadonlySegmentedMap, type ReadonlyShardedSet } from './big-maps.js';
import { Leases } from './leases.js';

/**
 * Origin of what the sync jails and aliases held when the store was first created (an
 * upgrade): nobody knows who banned it, so any origin's unban of the address releases it,
 * as every unban did before. Node ids cannot start with "@".
 */
export const ADOPTED = '@adopted';
/** Origin of a manual ban (a bare address, no origin): it speaks for the fleet, and only a fleet-wide unban releases it. */
export const MANUAL = '@manual';

/** Origins per address: a ban seen by many hosts fits; ever new node ids do not grow it. */
export const MAX_ORIGINS_PER_ADDRESS = 64;
/** Released addresses remembered for reconciliation (see `released`), per primary jail… */
const MAX_RELEASED_PER_JAIL = 200_000;
/** …forgotten, about the oldest first (see ShardedMap.forgetOldest), this many at a time (one pass over the set, not one per release). */
const RELEASED_FORGET_BATCH = 10_000;

/** Network input decides what is held, so the store is bounded (config: max_holdings, max_holdings_per_origin). */
export interface HoldingLimits {
  /** Holdings over every origin and jail. */
  total: number;
  /** Holdings of one origin in one primary jail (adopted holdings excepted: they come from this host's own sync jails). */
  perOrigin: number;
}

export const DEFAULT_LIMITS: HoldingLimits = { total: 2_000_000, perOrigin: 100_000 };

/**
 * Whether the origin may add a holding of the address in the jail: 'known' (it holds it
 * already); 'ok'; 'crowded' (MAX_ORIGINS_PER_ADDRESS others hold it); 'quota' (the origin
 * holds `perOrigin` in the jail); 'full' (the store is full and the origin holds its share,
 * the total divided among the origins, or more); or, when the store is full and the origin
 * is under its share, the holding to evict first: the oldest of the origin most over its share.
 */
export type Admission = 'known' | 'ok' | 'crowded' | 'quota' | 'full' | Holding;

export interface Holding {
  origin: string;
  jail: string;
  address: string;
}

/**
 * A count, kept up to date, of one origin's holdings in one jail whose mark is `mark` or more:
 * what a snapshot confirmed so far. `releasing`: the holdings below `mark` are being released,
 * so only those counted here count toward the origin's quota.
 */
export interface Watch {
  readonly origin: string;
  readonly jail: string;
  readonly mark: number;
  count: number;
  releasing: boolean;
}

/** One origin's holdings: per primary jail, address -> mark (see `mark`). */
interface OriginHoldings {
  name: string;
  total: number;
  jails: Map<string, SegmentedMap<number>>;
  /** Where eviction goes on: the oldest holding of a jail not evicted yet (a SegmentedMap iterator skips what was deleted since). */
  evictFrom?: { jail: string; addresses: Iterator<string> };
}

/**
 * Who holds which address, per primary jail: `(origin, primary jail, address)`. Compact
 * for 100,000s of holdings: one map entry per (jail, address) whose value is the single
 * origin (the common case) or an array of them, origin names interned; and an index per
 * origin, so that what one origin holds is found without looking at the others'.
 *
 * Each holding carries a mark, a number the fleet state uses to tell which holdings a
 * snapshot confirmed (see FleetState): 0 unless set.
 *
 * It also remembers, per jail, addresses whose last holding went (`released`), so that a
 * reconciliation removes from a sink only what the store held and gave up, never what
 * someone else put there.
 *
 * The tables that grow with the holdings are split (big-maps.ts), so that releasing 300,000
 * never has V8 rebuild a table of them all at once; an origin's keep their order (eviction
 * takes the oldest), the others need none.
 */
export class Holdings {
  private readonly jails = new Map<string, ShardedMap<string | string[]>>();
  private readonly byOrigin = new Map<string, OriginHoldings>();
  private readonly releasedByJail = new Map<string, ShardedSet>();
  /** origin -> jail -> its watches (few: a snapshot being received, one being released). */
  private readonly watches = new Map<string, Map<string, Watch[]>>();
  private total = 0;
  /** An origin over its share, evicted from while the store is full (found again when it no longer is over). */
  private victim: OriginHoldings | undefined;

  /** The holdings' ends: a holding without one is held until unbanned. */
  readonly leases = new Leases();

  constructor(readonly limits: HoldingLimits = DEFAULT_LIMITS) {}

  get size(): number {
    return this.total;
  }

  /** Whether the holding may be added (see Admission). */
  admission(origin: string, jail: string, address: string): Admission {
    // The address's holders say whether the origin is one: no look into the origin's own table.
    const current = this.jails.get(jail)?.get(address);
    if (current !== undefined && includes(current, origin)) return 'known';
    if (Array.isArray(current) && current.length >= MAX_ORIGINS_PER_ADDRESS) return 'crowded';
    const own = this.byOrigin.get(origin);
    const held = own?.jails.get(jail);
    if (origin !== ADOPTED && this.quotaCount(origin, jail, held?.size ?? 0) >= this.limits.perOrigin) return 'quota';
    if (this.total < this.limits.total) return 'ok';
    const share = this.limits.total / (this.byOrigin.size + (own ? 0 : 1));
    if ((own?.total ?? 0) >= share) return 'full';
    return this.evictable(share) ?? 'full';
  }

  /** Adds a holding (the caller checked `admission`; the store file replays without). */
  add(origin: string, jail: string, address: string, mark = 0): 'added' | 'known' | 'crowded' {
    let addresses = this.jails.get(jail);
    const current = addresses?.get(address);
    if (current !== undefined && includes(current, origin)) return 'known';
    if (Array.isArray(current) && current.length >= MAX_ORIGINS_PER_ADDRESS) return 'crowded';
    let own = this.byOrigin.get(origin);
    if (!own) this.byOrigin.set(origin, (own = { name: origin, total: 0, jails: new Map() }));
    const name = own.name;
    if (!addresses) this.jails.set(jail, (addresses = new ShardedMap()));
    if (current === undefined) addresses.set(address, name);
    else if (Array.isArray(current)) current.push(name);
    else addresses.set(address, [current, name]);
    let held = own.jails.get(jail);
    if (!held) own.jails.set(jail, (held = new SegmentedMap()));
    // Not among the address's holders, so not in the origin's table either.
    held.setNew(address, mark);
    this.countWatched(origin, jail, -Infinity, mark, 1);
    own.total += 1;
    this.total += 1;
    this.releasedByJail.get(jail)?.delete(address);
    return 'added';
  }

  /** Removes one origin's holding; true when it existed. */
  remove(origin: string, jail: string, address: string): boolean {
    const own = this.byOrigin.get(origin);
    const held = own?.jails.get(jail);
    const mark = held?.get(address);
    if (!own || mark === undefined) return false;
    held!.delete(address);
    this.leases.delete(origin, jail, address);
    this.countWatched(origin, jail, -Infinity, mark, -1);
    const addresses = this.jails.get(jail)!;
    const current = addresses.get(address)!;
    if (Array.isArray(current)) {
      const rest = current.filter((name) => name !== origin);
      addresses.set(address, rest.length === 1 ? rest[0]! : rest);
    } else {
      addresses.delete(address);
      this.noteReleased(jail, address);
      if (addresses.size === 0) this.jails.delete(jail);
    }
    own.total -= 1;
    this.total -= 1;
    if (held!.size === 0) own.jails.delete(jail);
    // Names come from the network: an origin that holds nothing is not kept.
    if (own.total === 0) {
      this.byOrigin.delete(origin);
      if (this.victim === own) this.victim = undefined;
    }
    return true;
  }

  /** The holding's mark, or undefined when the origin does not hold the address in the jail. */
  mark(origin: string, jail: string, address: string): number | undefined {
    return this.byOrigin.get(origin)?.jails.get(jail)?.get(address);
  }

  /** Raises the holding's mark (marks only grow). */
  setMark(origin: string, jail: string, address: string, mark: number): void {
    const held = this.byOrigin.get(origin)?.jails.get(jail);
    const current = held?.get(address);
    if (current === undefined || current >= mark) return;
    held!.set(address, mark);
    this.countWatched(origin, jail, current, mark, 1);
  }

  /** Starts counting the origin's holdings in the jail marked `mark` or more; `mark` is above every holding's (a new snapshot's), so the count starts at 0. */
  watch(origin: string, jail: string, mark: number): Watch {
    const watch: Watch = { origin, jail, mark, count: 0, releasing: false };
    let byJail = this.watches.get(origin);
    if (!byJail) this.watches.set(origin, (byJail = new Map()));
    byJail.set(jail, [...(byJail.get(jail) ?? []), watch]);
    return watch;
  }

  unwatch(watch: Watch): void {
    const byJail = this.watches.get(watch.origin);
    const rest = (byJail?.get(watch.jail) ?? []).filter((other) => other !== watch);
    if (rest.length > 0) byJail!.set(watch.jail, rest);
    else byJail?.delete(watch.jail);
    if (byJail?.size === 0) this.watches.delete(watch.origin);
  }

  /** What the origin holds in the jail, address -> mark, oldest first; live (a release while iterating is fine). */
  heldBy(origin: string, jail: string): ReadonlySegmentedMap<number> {
    return this.byOrigin.get(origin)?.jails.get(jail) ?? new SegmentedMap();
  }

  /** Each origin's holdings in each primary jail (see heldBy), live. */
  *holders(): IterableIterator<[origin: string, jail: string, held: ReadonlySegmentedMap<number>]> {
    for (const { name, jails } of this.byOrigin.values()) for (const [jail, held] of jails) yield [name, jail, held];
  }

  origins(jail: string, address: string): readonly string[] {
    const current = this.jails.get(jail)?.get(address);
    if (current === undefined) return [];
    return Array.isArray(current) ? current : [current];
  }

  /** Whether some origin but `excluded` holds the address in the jail (origins() without an array). */
  heldBesides(jail: string, address: string, excluded: string | undefined): boolean {
    const current = this.jails.get(jail)?.get(address);
    if (current === undefined) return false;
    return Array.isArray(current) ? current.some((origin) => origin !== excluded) : current !== excluded;
  }

  isHeld(jail: string, address: string): boolean {
    return this.jails.get(jail)?.has(address) ?? false;
  }

  /** Addresses of the jail with at least one holding, each with its origins. */
  *entries(jail: string): IterableIterator<[address: string, origins: readonly string[]]> {
    for (const [address, current] of this.jails.get(jail) ?? []) yield [address, Array.isArray(current) ? current : [current]];
  }

  jailNames(): string[] {
    return [...this.jails.keys()];
  }

  /** Addresses whose last holding in the jail went and that no one has held since. */
  released(jail: string): ReadonlyShardedSet {
    return this.releasedByJail.get(jail) ?? new ShardedSet();
  }

  /** A reconciliation found the released address gone from every sink: no need to remember it. */
  forgetReleased(jail: string, address: string): void {
    this.releasedByJail.get(jail)?.delete(address);
  }

  /** Restores a remembered release (from the store file). */
  noteReleased(jail: string, address: string): void {
    let released = this.releasedByJail.get(jail);
    if (!released) this.releasedByJail.set(jail, (released = new ShardedSet()));
    released.delete(address);
    released.add(address);
    if (released.size > MAX_RELEASED_PER_JAIL) released.forgetOldest(RELEASED_FORGET_BATCH);
  }

  releasedJails(): string[] {
    return [...this.releasedByJail.keys()];
  }

  /** jail -> origin -> number of holdings. */
  counts(): Record<string, Record<string, number>> {
    const counts: Record<string, Record<string, number>> = {};
    for (const { name, jails } of this.byOrigin.values()) {
      for (const [jail, held] of jails) (counts[jail] ??= {})[name] = held.size;
    }
    return counts;
  }

  /** The origins holding the most, with how many, the largest first. */
  largest(count: number): Array<[origin: string, holdings: number]> {
    return [...this.byOrigin.values()]
      .sort((a, b) => b.total - a.total)
      .slice(0, count)
      .map(({ name, total }) => [name, total]);
  }

  private watchesOf(origin: string, jail: string): readonly Watch[] {
    return this.watches.size === 0 ? [] : (this.watches.get(origin)?.get(jail) ?? []);
  }

  /** Adds `delta` to the count of each of the origin's watches in the jail whose mark is above `above` and at most `mark`. An indexed loop: a snapshot runs this 100,000 times. */
  private countWatched(origin: string, jail: string, above: number, mark: number, delta: number): void {
    const watches = this.watchesOf(origin, jail);
    for (let index = 0; index < watches.length; index++) {
      const watch = watches[index]!;
      if (watch.mark > above && watch.mark <= mark) watch.count += delta;
    }
  }

  /** What counts toward the origin's quota in the jail: its holdings, but those a release under way is taking away. */
  private quotaCount(origin: string, jail: string, held: number): number {
    for (const watch of this.watchesOf(origin, jail)) if (watch.releasing) return watch.count;
    return held;
  }

  /** The oldest holding of an origin over `share`, or undefined when none is (then nothing may be evicted). */
  private evictable(share: number): Holding | undefined {
    if (!this.victim || this.victim.total <= share) {
      this.victim = undefined;
      for (const candidate of this.byOrigin.values()) if (candidate.total > share && candidate.total > (this.victim?.total ?? 0)) this.victim = candidate;
      if (!this.victim) return undefined;
    }
    const victim = this.victim;
    for (;;) {
      const cursor = victim.evictFrom;
      const next = cursor?.addresses.next();
      if (cursor && next && !next.done) {
        if (victim.jails.get(cursor.jail)?.has(next.value)) return { origin: victim.name, jail: cursor.jail, address: next.value };
        continue;
      }
      // From its largest jail, the oldest first.
      const [jail, held] = [...victim.jails].reduce((largest, entry) => (entry[1].size > largest[1].size ? entry : largest));
      victim.evictFrom = { jail, addresses: held.keys() };
    }
  }
}

/** Whether the holders of an address (one origin, or several) include `origin`. */
function includes(holders: string | readonly string[], origin: string): boolean {
  return Array.isArray(holders) ? holders.includes(origin) : holders === origin;
}
