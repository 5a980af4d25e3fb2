import { Leases } from './leases.js';

/**
 * Origin of what the sync jails and aliases held when the store was first created (an
 * upgrade): nobody knows who banned it, so any origin's unban of the address releases it,
 * as every unban did before. Node ids cannot start with "@".
 */
export const ADOPTED = '@adopted';
/** Origin of a manual ban (a bare address, no origin): it speaks for the fleet, and only a fleet-wide unban releases it. */
export const MANUAL = '@manual';

/** Network input decides what is held, so the store is bounded: holdings over all jails… */
export const MAX_HOLDINGS = 2_000_000;
/** …and origins per address (a ban seen by many hosts fits; ever new node ids do not grow it). */
export const MAX_ORIGINS_PER_ADDRESS = 64;
/** Released addresses remembered for reconciliation (see `released`), per primary jail. */
const MAX_RELEASED_PER_JAIL = 200_000;

/** 'added': a new holding; 'known': held already; 'full' / 'crowded': refused at MAX_HOLDINGS / MAX_ORIGINS_PER_ADDRESS. */
type AddResult = 'added' | 'known' | 'full' | 'crowded';

/**
 * Who holds which address, per primary jail: `(origin, primary jail, address)`. Compact
 * for 100,000s of holdings: one map entry per (jail, address) whose value is the single
 * origin (the common case) or an array of them, origin names interned.
 *
 * It also remembers, per jail, addresses whose last holding went (`released`), so that a
 * reconciliation removes from a sink only what the store held and gave up, never what
 * someone else put there.
 */
export class Holdings {
  private readonly jails = new Map<string, Map<string, string | string[]>>();
  /** jail -> origin -> holdings */
  private readonly perOrigin = new Map<string, Map<string, number>>();
  private readonly releasedByJail = new Map<string, Set<string>>();
  private readonly names = new Map<string, string>();
  private total = 0;
  /** The holdings' ends: a holding without one is held until unbanned. */
  readonly leases = new Leases();

  get size(): number {
    return this.total;
  }

  add(origin: string, jail: string, address: string): AddResult {
    let addresses = this.jails.get(jail);
    const current = addresses?.get(address);
    if (current !== undefined && (current === origin || (Array.isArray(current) && current.includes(origin)))) return 'known';
    if (this.total >= MAX_HOLDINGS) return 'full';
    if (Array.isArray(current) && current.length >= MAX_ORIGINS_PER_ADDRESS) return 'crowded';
    const name = this.intern(origin);
    if (!addresses) this.jails.set(jail, (addresses = new Map()));
    if (current === undefined) addresses.set(address, name);
    else if (Array.isArray(current)) current.push(name);
    else addresses.set(address, [current, name]);
    this.releasedByJail.get(jail)?.delete(address);
    this.count(jail, name, 1);
    return 'added';
  }

  /** Removes one origin's holding; true when it existed. */
  remove(origin: string, jail: string, address: string): boolean {
    const addresses = this.jails.get(jail);
    const current = addresses?.get(address);
    if (current === undefined || !addresses) return false;
    if (current === origin) {
      addresses.delete(address);
      this.noteReleased(jail, address);
      if (addresses.size === 0) this.jails.delete(jail);
    } else if (Array.isArray(current) && current.includes(origin)) {
      const rest = current.filter((name) => name !== origin);
      addresses.set(address, rest.length === 1 ? rest[0]! : rest);
    } else {
      return false;
    }
    this.leases.delete(origin, jail, address);
    this.count(jail, origin, -1);
    return true;
  }

  origins(jail: string, address: string): readonly string[] {
    const current = this.jails.get(jail)?.get(address);
    if (current === undefined) return [];
    return Array.isArray(current) ? current : [current];
  }

  isHeld(jail: string, address: string): boolean {
    return this.jails.get(jail)?.has(address) ?? false;
  }

  /** Addresses of the jail with at least one holding, each with its origins. */
  *entries(jail: string): IterableIterator<[address: string, origins: readonly string[]]> {
    for (const [address, current] of this.jails.get(jail) ?? []) yield [address, Array.isArray(current) ? current : [current]];
  }

  /** Addresses the origin holds in the jail. */
  heldBy(origin: string, jail: string): string[] {
    const held: string[] = [];
    for (const [address, origins] of this.entries(jail)) if (origins.includes(origin)) held.push(address);
    return held;
  }

  jailNames(): string[] {
    return [...this.jails.keys()];
  }

  /** Addresses whose last holding in the jail went and that no one has held since. */
  released(jail: string): ReadonlySet<string> {
    return this.releasedByJail.get(jail) ?? new Set();
  }

  /** A reconciliation found the released address gone from every sink: no need to remember it. */
  forgetReleased(jail: string, address: string): void {
    this.releasedByJail.get(jail)?.delete(address);
  }

  /** Restores a remembered release (from the store file). */
  noteReleased(jail: string, address: string): void {
    let released = this.releasedByJail.get(jail);
    if (!released) this.releasedByJail.set(jail, (released = new Set()));
    released.delete(address);
    released.add(address);
    if (released.size > MAX_RELEASED_PER_JAIL) released.delete(released.values().next().value!);
  }

  releasedJails(): string[] {
    return [...this.releasedByJail.keys()];
  }

  /** jail -> origin -> number of holdings. */
  counts(): Record<string, Record<string, number>> {
    return Object.fromEntries([...this.perOrigin].map(([jail, origins]) => [jail, Object.fromEntries(origins)]));
  }

  private count(jail: string, origin: string, delta: number): void {
    this.total += delta;
    let origins = this.perOrigin.get(jail);
    if (!origins) this.perOrigin.set(jail, (origins = new Map()));
    const next = (origins.get(origin) ?? 0) + delta;
    if (next > 0) origins.set(origin, next);
    else {
      origins.delete(origin);
      if (origins.size === 0) this.perOrigin.delete(jail);
      // Names come from the network: an origin that holds nothing anywhere is not kept.
      if (![...this.perOrigin.values()].some((map) => map.has(origin))) this.names.delete(origin);
    }
  }

  private intern(origin: string): string {
    const known = this.names.get(origin);
    if (known !== undefined) return known;
    this.names.set(origin, origin);
    return origin;
  }
}
