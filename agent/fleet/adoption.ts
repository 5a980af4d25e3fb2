import { closeSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { holdingsStoreError } from './holdings-file.js';
import { NODE_ID } from '../../src/event.js';
import { isCanonical } from '../../src/ip.js';
import { existsNoFollow, openForAppend, syncDir } from '../state-dir/durable-file.js';
import type { FleetState } from './fleet-state.js';
import { ADOPTED, MANUAL } from './holdings.js';
import type { Projection } from './projection.js';

/** In state_dir from the first start with a holdings store until every sync jail's content was adopted. */
const MARKER = 'holdings.adopting';

/** A holder as state files of earlier versions wrote it: "origin/jail". */
type Holder = string;

/**
 * Upgrade adoption, all of it: on the first start with a holdings store (an upgrade from the
 * original syncfail2ban or from a version before the store), what the earlier version left
 * is taken into the store, so that an upgrade lifts no ban:
 * - each sync jail's content, as held by nobody known (ADOPTED), when the fail2ban sink first
 *   reads the jail. Pending until every sync jail was read (a marker file in state_dir), so
 *   that a start cut short, or fail2ban down, adopts at the next chance;
 * - the holders ("origin/jail") an OPNsense bridge state file of an earlier version kept,
 *   read by the OPNsense sink at its start: on the very first start with a store only.
 * Begun by the fleet's part once the store is loaded, before any sink starts.
 */
export class Adoption {
  private store: Pick<FleetState, 'addAll' | 'holdings'> | undefined;
  /** The store did not exist before this start. */
  private fresh = false;
  private pending = false;
  /** Sync jails whose content is still to be adopted. */
  private readonly syncJails = new Set<string>();
  private lastError: string | null = null;

  constructor(
    private readonly stateDir: string,
    /** A dry run: adopts into the store in memory, writes no marker. */
    private readonly readOnly = false,
  ) {}

  /** The fail2ban sink adopts from these sync jails (told before the store is loaded). */
  expectSyncJails(targets: Iterable<string>): void {
    for (const target of targets) this.syncJails.add(target);
  }

  /** Once the store is loaded: `fresh` when it did not exist before. Throws a ConfigError when state_dir cannot be written. */
  begin(store: Pick<FleetState, 'addAll' | 'holdings'>, fresh: boolean): void {
    this.store = store;
    this.fresh = fresh;
    const marker = join(this.stateDir, MARKER);
    if (fresh && !this.readOnly) {
      try {
        closeSync(openForAppend(marker));
      } catch (error) {
        throw holdingsStoreError(this.stateDir, error);
      }
      // Durable long before the first adoption could end.
      syncDir(this.stateDir).catch((error: Error) => (this.lastError = `cannot sync state_dir ${this.stateDir} (${error.message})`));
    }
    this.pending = (fresh && this.readOnly) || existsNoFollow(marker);
    if (this.pending && this.syncJails.size === 0) this.done();
  }

  /** Why the adoption could not be recorded, or null. */
  get error(): string | null {
    return this.lastError;
  }

  /** Whether the content of this sync jail is still to be adopted. */
  pendingFor(target: string): boolean {
    return this.pending && this.syncJails.has(target);
  }

  /**
   * Takes what the sync jail holds (`present`, as fail2ban listed it) into the store, but for
   * what the store holds through it already; returns how many addresses were adopted.
   */
  syncJail(projection: Projection, target: string, present: ReadonlySet<string>): number {
    const store = this.store!;
    const jail = projection.jailsOf(target)[0]!;
    // fail2ban stores any string as a ban: only canonical addresses are adopted.
    const adopted = [...present].filter((address) => isCanonical(address) && !projection.holds(store.holdings, target, address));
    const count = store.addAll(ADOPTED, jail, adopted);
    this.syncJails.delete(target);
    if (this.syncJails.size === 0) this.done();
    return count;
  }

  /**
   * On the very first start with a store, the holders a bridge state file of an earlier
   * version kept: `wanted` from its snapshot ([alias, address, holder]), then its journal's
   * records in order ([alias, address, holders]; null holders: the record names none), the
   * last record of an address naming its holders.
   */
  bridgeHolders(wanted: ReadonlyArray<readonly [alias: string, address: string, holder: Holder]>, records: ReadonlyArray<readonly [alias: string, address: string, holders: readonly Holder[] | null]>): void {
    if (!this.fresh) return;
    const holders = new Map<string, { address: string; named: Holder[] }>();
    for (const [alias, address, holder] of wanted) {
      const key = `${alias}\u0000${address}`;
      const known = holders.get(key);
      if (known) known.named.push(holder);
      else holders.set(key, { address, named: [holder] });
    }
    for (const [alias, address, named] of records) if (named !== null) holders.set(`${alias}\u0000${address}`, { address, named: [...named] });
    for (const { address, named } of holders.values()) {
      for (const holder of named) this.store!.addAll(adoptedOrigin(holder.slice(0, holder.indexOf('/'))), holder.slice(holder.indexOf('/') + 1), [address]);
    }
  }

  /** Every sync jail was adopted: never again. */
  private done(): void {
    this.pending = false;
    if (this.readOnly) return;
    try {
      unlinkSync(join(this.stateDir, MARKER));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') this.lastError = `cannot remove ${join(this.stateDir, MARKER)} (${(error as Error).message}); the next start adopts again (harmless)`;
    }
  }
}

/** A holder's origin as a holding: "@manual" stays manual, anything not a node id is adopted. */
function adoptedOrigin(origin: string): string {
  if (origin === MANUAL) return MANUAL;
  return NODE_ID.test(origin) ? origin : ADOPTED;
}
