import type { SyncEvent } from '../../src/event.js';

/**
 * Origin recorded for a bare-address (manual) event. Node ids cannot start with "@", so a
 * host named "manual" can never release a ban an admin published by hand.
 */
export const MANUAL_ORIGIN = '@manual';

/** Who keeps an address in an alias: one jail on one host, written "origin/jail". */
export function holderOf(event: Pick<SyncEvent, 'origin' | 'jail'>): string {
  return `${event.origin ?? MANUAL_ORIGIN}/${event.jail}`;
}

export function jailOfHolder(holder: string): string {
  return holder.slice(holder.indexOf('/') + 1);
}

/**
 * Events come from the network, so what they can make the bridge hold is bounded: at most
 * this many wanted addresses over all aliases (pf's default table-entries limit is about
 * this, and a firewall alias of a million entries is already a stretch)…
 */
export const MAX_WANTED_ADDRESSES = 1_000_000;
/**
 * …at most this many holders (host + jail) per address (a ban seen by many hosts at once
 * fits; a client publishing under ever new node ids does not get to grow it)…
 */
export const MAX_HOLDERS_PER_ADDRESS = 64;
/** …and at most this many holder entries in all (MAX_WANTED_ADDRESSES × MAX_HOLDERS_PER_ADDRESS would be far too many). */
export const MAX_HOLDER_ENTRIES = 2 * MAX_WANTED_ADDRESSES;

/**
 * 'new': the address was not wanted before; 'known': it was (the holder was added, or held
 * it already); 'full': refused, MAX_WANTED_ADDRESSES reached; 'crowded': refused, the
 * address has MAX_HOLDERS_PER_ADDRESS holders (it stays wanted through them);
 * 'saturated': refused, MAX_HOLDER_ENTRIES holder entries are held over all addresses.
 */
export type HoldResult = 'new' | 'known' | 'full' | 'crowded' | 'saturated';

/** Whether `hold` refused the holder. */
export function refusedHold(result: HoldResult): result is 'full' | 'crowded' | 'saturated' {
  return result === 'full' || result === 'crowded' || result === 'saturated';
}

/** What `prune` did with holders whose jail no longer maps to the alias they hold. */
export interface PruneResult {
  /** Moved to the alias their jail maps to now. */
  moved: number;
  /** Dropped: their jail maps to no alias now (or the new alias refused them, at a cap). */
  dropped: number;
}

/**
 * What each alias should hold, reference-counted: an address stays wanted while any holder
 * (origin host + jail mapped to that alias) still bans it.
 */
export class DesiredState {
  /** alias -> address (canonical text) -> holders */
  private readonly aliases = new Map<string, Map<string, Set<string>>>();
  private total = 0;
  /** Holder entries over all addresses. */
  private entries = 0;

  constructor(
    readonly maxAddresses = MAX_WANTED_ADDRESSES,
    readonly maxHolders = MAX_HOLDERS_PER_ADDRESS,
    readonly maxHolderEntries = 2 * maxAddresses,
  ) {}

  /** Wanted addresses over all aliases. */
  get size(): number {
    return this.total;
  }

  /** Adds a holder, unless a cap is reached (see HoldResult). */
  hold(alias: string, address: string, holder: string): HoldResult {
    const holders = this.aliases.get(alias)?.get(address);
    if (holders) {
      if (holders.has(holder)) return 'known';
      if (holders.size >= this.maxHolders) return 'crowded';
      if (this.entries >= this.maxHolderEntries) return 'saturated';
      holders.add(holder);
      this.entries += 1;
      return 'known';
    }
    if (this.total >= this.maxAddresses) return 'full';
    if (this.entries >= this.maxHolderEntries) return 'saturated';
    let addresses = this.aliases.get(alias);
    if (!addresses) this.aliases.set(alias, (addresses = new Map()));
    addresses.set(address, new Set([holder]));
    this.total += 1;
    this.entries += 1;
    return 'new';
  }

  /** Removes one holder; true when that was the last one, so the address is no longer wanted. */
  release(alias: string, address: string, holder: string): boolean {
    return this.releaseWhere(alias, address, (candidate) => candidate === holder);
  }

  /**
   * A bare unban is an admin override: it drops every holder of `jail` for the address, on
   * whichever host. Holders through other jails mapped to the same alias keep it.
   */
  releaseJail(alias: string, address: string, jail: string): boolean {
    return this.releaseWhere(alias, address, (holder) => jailOfHolder(holder) === jail);
  }

  /** Drops every holder of the address. */
  forget(alias: string, address: string): void {
    this.releaseWhere(alias, address, () => true);
  }

  wants(alias: string, address: string): boolean {
    return this.aliases.get(alias)?.has(address) ?? false;
  }

  holders(alias: string, address: string): string[] {
    return [...(this.aliases.get(alias)?.get(address) ?? [])];
  }

  addresses(alias: string): Set<string> {
    return new Set(this.aliases.get(alias)?.keys() ?? []);
  }

  /** alias -> number of wanted addresses. */
  counts(): Record<string, number> {
    return Object.fromEntries([...this.aliases].map(([alias, addresses]) => [alias, addresses.size]));
  }

  /**
   * For holders whose jail no longer maps to the alias they hold (the admin changed
   * [opn_aliases]): moves them to the alias their jail maps to now, or drops them when it
   * maps to none (or that alias is at a cap).
   */
  prune(mapping: ReadonlyMap<string, string>): PruneResult {
    const result: PruneResult = { moved: 0, dropped: 0 };
    const moves: Array<[alias: string, address: string, holder: string]> = [];
    for (const [alias, addresses] of this.aliases) {
      for (const [address, holders] of addresses) {
        for (const holder of holders) {
          const target = mapping.get(jailOfHolder(holder));
          if (target === alias) continue;
          holders.delete(holder);
          this.entries -= 1;
          if (target === undefined) result.dropped += 1;
          else moves.push([target, address, holder]);
        }
        if (holders.size === 0) {
          addresses.delete(address);
          this.total -= 1;
        }
      }
      if (addresses.size === 0) this.aliases.delete(alias);
    }
    // Taken out first, so that the room they leave counts.
    for (const [alias, address, holder] of moves) {
      if (refusedHold(this.hold(alias, address, holder))) result.dropped += 1;
      else result.moved += 1;
    }
    return result;
  }

  toJSON(): Record<string, Record<string, string[]>> {
    return Object.fromEntries(
      [...this.aliases].map(([alias, addresses]) => [alias, Object.fromEntries([...addresses].map(([address, holders]) => [address, [...holders]]))]),
    );
  }

  private releaseWhere(alias: string, address: string, matches: (holder: string) => boolean): boolean {
    const addresses = this.aliases.get(alias);
    const holders = addresses?.get(address);
    if (!addresses || !holders) return false;
    for (const holder of holders) {
      if (!matches(holder)) continue;
      holders.delete(holder);
      this.entries -= 1;
    }
    if (holders.size > 0) return false;
    addresses.delete(address);
    this.total -= 1;
    if (addresses.size === 0) this.aliases.delete(alias);
    return true;
  }
}
