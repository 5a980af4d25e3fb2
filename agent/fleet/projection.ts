import type { Action } from '../../src/event.js';
import type { Holdings } from './holdings.js';

/** One wanted change to a sink's target (a sync jail, an alias, a kernel set). */
export interface Change {
  target: string;
  action: Action;
  /** Canonical address text, already validated. */
  address: string;
}

/**
 * What the fleet state feeds: a sink, seen through its projection. After every change of
 * the holdings, each follower whose target gains its first or loses its last holding of an
 * address is handed that change (agent/sinks/sink.ts: the sinks are the followers).
 */
export interface Follower {
  readonly projection: Projection;
  /** Queues the changes; never blocks, never throws. */
  submit(changes: readonly Change[]): void;
  /** Also handed a ban of an address its target holds already when the address's end (Projection.end) moves later: a sink that keeps the end itself. */
  readonly followsEnds?: boolean;
}

/**
 * One sink's view of the holdings: target T (a sync jail, an alias) holds address X while
 * some holding (O, J, X) has `mapping[J] = T` and O counts for this sink (the sync jails
 * leave out this host's own bans; the aliases take every origin's).
 */
export class Projection {
  /** target -> the primary jails mapped to it */
  private readonly jailsByTarget = new Map<string, string[]>();

  constructor(
    /** primary jail -> target */
    readonly mapping: ReadonlyMap<string, string>,
    /** Holdings of this origin do not count (this host's own, for the sync jails). */
    private readonly excluded?: string,
  ) {
    for (const [jail, target] of mapping) this.jailsByTarget.set(target, [...(this.jailsByTarget.get(target) ?? []), jail]);
  }

  targets(): string[] {
    return [...this.jailsByTarget.keys()];
  }

  jailsOf(target: string): readonly string[] {
    return this.jailsByTarget.get(target) ?? [];
  }

  counts(origin: string): boolean {
    return origin !== this.excluded;
  }

  /** Whether the target should hold the address. */
  holds(holdings: Holdings, target: string, address: string): boolean {
    // An indexed loop: the fleet state asks twice per address of a snapshot.
    const jails = this.jailsOf(target);
    for (let index = 0; index < jails.length; index++) if (this.heldThrough(holdings, jails[index]!, address)) return true;
    return false;
  }

  /**
   * When the target's hold of the address ends, in ms by this host's clock: the latest end of
   * the holdings it is held through; undefined while one of them lasts until unbanned (or
   * none holds it). The agent releases it then; a sink that keeps a timeout of its own (a
   * kernel set element's) sets it from this, as a backstop. It moves later with a later
   * ban, and earlier when the holding that had the latest end goes.
   */
  end(holdings: Holdings, target: string, address: string): number | undefined {
    let latest: number | undefined;
    const jails = this.jailsOf(target);
    for (let index = 0; index < jails.length; index++) {
      const jail = jails[index]!;
      const origins = holdings.origins(jail, address);
      for (let at = 0; at < origins.length; at++) {
        const origin = origins[at]!;
        if (!this.counts(origin)) continue;
        const end = holdings.leases.end(origin, jail, address);
        if (end === undefined) return undefined;
        latest = Math.max(latest ?? end, end);
      }
    }
    return latest;
  }

  /** Everything the target should hold. */
  wanted(holdings: Holdings, target: string): Set<string> {
    const wanted = new Set<string>();
    for (const jail of this.jailsOf(target)) {
      for (const [address, origins] of holdings.entries(jail)) if (origins.some((origin) => this.counts(origin))) wanted.add(address);
    }
    return wanted;
  }

  /** How many addresses the target should hold: the size of `wanted`, without building the set (status asks on every call). */
  wantedCount(holdings: Holdings, target: string): number {
    const jails = this.jailsOf(target);
    let count = 0;
    jails.forEach((jail, index) => {
      const earlier = jails.slice(0, index);
      for (const [address, origins] of holdings.entries(jail)) {
        // Counted once, through the first of the target's jails that holds it.
        if (origins.some((origin) => this.counts(origin)) && !earlier.some((other) => this.heldThrough(holdings, other, address))) count += 1;
      }
    });
    return count;
  }

  /** Addresses the store held for the target and released since: the only ones a reconciliation may remove. */
  released(holdings: Holdings, target: string): Set<string> {
    const released = new Set<string>();
    for (const jail of this.jailsOf(target)) for (const address of holdings.released(jail)) released.add(address);
    return released;
  }

  private heldThrough(holdings: Holdings, jail: string, address: string): boolean {
    return holdings.heldBesides(jail, address, this.excluded);
  }
}
