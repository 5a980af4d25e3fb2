import type { Logger } from '../../../src/log.js';
import { OpnsenseError, pfRendering, type OpnsenseClient, type TableSizes } from './api/client.js';
import type { Change } from '../../fleet/projection.js';
import type { Backend, Rejection } from '../batcher.js';
import type { AliasInfoCache } from './alias-info.js';
import type { FirewallLedger } from './ledger.js';
import { forEachLimited } from './limit.js';
import { LogThrottle } from '../../../src/log-throttle.js';
import type { JournalRecord, LedgerJournal } from './persisted-state.js';

/** Requests in flight to one firewall at once (and its keep-alive socket pool). */
export const CONCURRENCY = 12;
/**
 * alias_util writes to a Host(s)/Network(s) alias in flight at once: each takes the firewall's
 * global config lock for a config save, so more would only wait there (and time out).
 */
const CONFIG_WRITE_CONCURRENCY = 2;

/**
 * From this many changes to one Host(s)/Network(s) alias in a batch, they are written with
 * one set_item + reconfigure (one config save) instead of one alias_util call (one config
 * save each). The bulk path rewrites the whole alias and races with edits made meanwhile
 * in the GUI, so single bans keep the per-address path, which never touches other entries.
 */
const BULK_MIN_CHANGES = 20;

export interface AliasWriterOptions {
  client: OpnsenseClient;
  ledger: FirewallLedger;
  aliasInfo: AliasInfoCache;
  /** Who holds an address now (journalled with each change). */
  holders: (alias: string, address: string) => string[];
  /** Each batch's changes are journalled ahead of its calls, so the ledger on disk covers every add in flight. */
  state: LedgerJournal;
  /** Told which addresses were added (answered done) to an alias, e.g. to kill their states. */
  onAdded?: (alias: string, addresses: string[]) => void;
  log: Logger;
}

interface AliasChanges {
  adds: string[];
  deletes: string[];
  /** Adds the ledger did not hold before this batch claimed them. */
  claimed: Set<string>;
  /** What the firewall refused of them (dropped; reconciliation tries again). */
  refused: Rejection[];
}

/** The fix for a change the firewall refused for one alias. */
function aliasFix(alias: string): string {
  return `fix alias ${alias} on the firewall (Firewall: Aliases: it must exist, of a type that holds the address), or map the jail to another alias in [opn_aliases]; reconciliation applies the change once it can`;
}

/**
 * The backend of ONE firewall's sink: applies a batch of changes to one alias (each alias
 * has its own queue). Errors that concern the whole firewall (unreachable, 401, 403, 404,
 * 400, 5xx) are thrown so the Batcher retries with backoff; errors that concern one alias
 * or address (nonexistent alias, "failed", a network on a Host(s) alias, set_item refusing
 * the content) are logged and the change dropped (or, for set_item, sent address by
 * address): the address stays in the desired state and reconciliation tries again.
 */
export class AliasWriter implements Backend {
  readonly name: string;
  private readonly throttle = new LogThrottle();
  /** alias -> the listing in flight, shared by whoever needs one meanwhile. */
  private readonly listings = new Map<string, Promise<Set<string>>>();

  constructor(private readonly options: AliasWriterOptions) {
    this.name = `opnsense ${options.client.firewall}`;
  }

  private get firewall(): string {
    return this.options.client.firewall;
  }

  /** Applies a batch of changes to ONE alias (each alias has its own queue); returns what the firewall refused. */
  async apply(batch: readonly Change[]): Promise<Rejection[]> {
    const { ledger, state } = this.options;
    const alias = batch[0]?.target;
    if (alias === undefined) return [];
    const changes: AliasChanges = { adds: [], deletes: [], claimed: new Set(), refused: [] };
    for (const { target, action, address } of batch) {
      if (target !== alias) throw new Error(`a batch for alias ${alias} holds a change to alias ${target}`);
      if (action === 'ban') changes.adds.push(address);
      // Only what the bridge added is ever removed.
      else if (ledger.has(alias, address)) changes.deletes.push(address);
    }
    // Nothing is claimed in an alias before a listing since start has shown what others put
    // there (what was there is in memory only). Also while the firewall is down: this throws,
    // and the Batcher retries once it answers.
    if (changes.adds.length > 0 && !ledger.listed(alias)) await this.listAlias(alias);
    const records: JournalRecord[] = [];
    const record = (address: string) => records.push([ledger.firewall, alias, address, this.options.holders(alias, address)]);
    for (const address of changes.adds) {
      if (ledger.present(alias, address)) continue;
      ledger.add(alias, address);
      changes.claimed.add(address);
      record(address);
    }
    // With its holders gone, so that a crash cannot bring back a ban released meanwhile.
    for (const address of changes.deletes) record(address);
    try {
      // Write-ahead: the claims are on disk before any add is sent (O(batch), see SnapshotJournal).
      await state.writeAhead(records);
    } catch (error) {
      // Nothing was sent: the retry claims them again, and writes them ahead again.
      for (const address of changes.claimed) ledger.unclaim(alias, address);
      throw error;
    }
    try {
      await this.applyToAlias(alias, changes);
    } finally {
      state.markDirty();
    }
    return changes.refused;
  }

  /**
   * Lists the alias in full and records in the ledger what others put there. One listing per
   * alias at a time: reconciliation and a batch that needs one share it. `tableSizes`: how to
   * read pf's table sizes, should an empty listing need checking (a reconciliation reads them once for all aliases).
   */
  listAlias(alias: string, tableSizes = () => this.options.client.tableSizes()): Promise<Set<string>> {
    const running = this.listings.get(alias);
    if (running) return running;
    const { ledger } = this.options;
    ledger.listingStarted(alias);
    const listing = this.confirmedListing(alias, tableSizes)
      .then(
        (rows) => {
          const present = new Set(rows);
          ledger.noteListing(alias, present);
          return present;
        },
        (error: unknown) => {
          ledger.listingFailed(alias);
          throw error;
        },
      )
      .finally(() => this.listings.delete(alias));
    this.listings.set(alias, listing);
    return listing;
  }

  /**
   * client.list, but an empty answer for an alias not known to be empty is not taken as is:
   * OPNsense answers HTTP 200 with nothing when configd timed out. get_table_size's count
   * for the table decides, else a second listing.
   */
  private async confirmedListing(alias: string, tableSizes: () => Promise<TableSizes | null>): Promise<string[]> {
    const { client, ledger } = this.options;
    const rows = await client.list(alias);
    // Known to be empty: listed empty before, and the bridge added nothing since.
    if (rows.length > 0 || (ledger.listed(alias) && !ledger.sawForeign(alias) && ledger.addresses(alias).size === 0)) return rows;
    let count: number | undefined;
    try {
      count = (await tableSizes())?.counts.get(alias);
    } catch (error) {
      if (!(error instanceof OpnsenseError) || (error.kind !== 'forbidden' && error.kind !== 'not_found')) throw error;
    }
    // Without a count (no "Firewall: Aliases" privilege, or configd failing there too), a second listing decides.
    if (count === undefined) return client.list(alias);
    if (count === 0) return rows;
    throw new Error(
      `OPNsense ${this.firewall}: listing alias "${alias}" came back empty although pf counts ${count} entries in it (OPNsense answers an empty list when its configd backend times out); nothing is concluded from it, will list again`,
    );
  }

  private async applyToAlias(alias: string, changes: AliasChanges): Promise<void> {
    const total = changes.adds.length + changes.deletes.length;
    if (total === 0) return;
    const info = await this.options.aliasInfo.get(alias);
    if (info.kind === 'host') changes.adds = await this.refuseNetworks(alias, changes);
    const configWrites = info.kind === 'host' || info.kind === 'network';
    const bulk = info.uuid !== null && info.bulk && configWrites && total >= BULK_MIN_CHANGES ? { kind: info.kind as 'host' | 'network', uuid: info.uuid } : null;
    // The content, read once for both paths: the bulk path rewrites it, alias_util must not be sent its first entry.
    let content: readonly string[] | null = null;
    if (info.uuid !== null && configWrites && (bulk !== null || changes.adds.length > 0)) content = (await this.options.client.getAliasItem(info.uuid, alias))?.content ?? null;
    if (content !== null && changes.adds.length > 0) changes.adds = await this.skipFirstEntry(alias, content, changes);

    let path: 'set_item' | 'alias_util' = bulk ? 'set_item' : 'alias_util';
    // Every write takes the firewall's config lock; only External aliases hold it briefly.
    const limit = info.kind === 'external' ? CONCURRENCY : CONFIG_WRITE_CONCURRENCY;
    let added: string[];
    try {
      added = bulk ? await this.bulk(alias, { ...bulk, content }, changes) : await this.oneByOne(alias, changes, limit);
    } catch (error) {
      // The bulk path refused for reasons of this alias or another one (set_item "failed",
      // no "Firewall: Alias: Edit", reconfigure failing on any broken alias): retrying it
      // would never succeed, one address per call may.
      if (!bulk || !bulkRefusal(error)) throw error;
      this.bulkRefused(alias, error);
      path = 'alias_util';
      added = await this.oneByOne(alias, changes, limit);
    }
    this.options.log.info(
      { firewall: this.firewall, alias, adds: added.length, deletes: changes.deletes.length, path },
      `applied ${added.length} add(s) and ${changes.deletes.length} delete(s) to alias ${alias} on ${this.firewall}`,
    );
    if (added.length > 0) this.options.onAdded?.(alias, added);
  }

  /** alias_util add/delete, `limit` at a time. Returns the addresses added. */
  private async oneByOne(alias: string, { adds, deletes, claimed, refused }: AliasChanges, limit: number): Promise<string[]> {
    const added: string[] = [];
    const notAdded: string[] = [];
    const work = [...deletes.map((address) => ({ add: false, address })), ...adds.map((address) => ({ add: true, address }))];
    try {
      await this.oneByOneCalls(alias, work, limit, added, notAdded, refused);
    } finally {
      // Claimed by this batch and not added: not the bridge's. An address it added earlier stays its own.
      await this.takeBack(alias, notAdded, claimed, 'unclaim');
    }
    return added;
  }

  private async oneByOneCalls(alias: string, work: Array<{ add: boolean; address: string }>, limit: number, added: string[], notAdded: string[], refused: Rejection[]): Promise<void> {
    const { client, ledger } = this.options;
    await forEachLimited(work, limit, async ({ add, address }) => {
      try {
        if (add) {
          await client.add(alias, address);
          added.push(address);
        } else {
          await client.delete(alias, address);
          ledger.remove(alias, address);
        }
      } catch (error) {
        if (!concernsOneAddress(error, add, address)) throw error;
        if (add) notAdded.push(address);
        refused.push({ change: { target: alias, action: add ? 'ban' : 'unban', address }, problem: { what: error.message, fix: aliasFix(alias) } });
        this.report(alias, error);
      }
    });
  }

  /**
   * Takes back claims this batch made (of the addresses given, those in `claimed`): journals
   * them as not the bridge's first (see JournalRecord), so that replaying the claim after a
   * crash cannot make them its own again, then updates the ledger (also when the journal
   * write fails, which throws: the batch is retried, its claims written again).
   */
  private async takeBack(alias: string, addresses: readonly string[], claimed: Set<string>, how: 'unclaim' | 'disown'): Promise<void> {
    const { ledger, state } = this.options;
    const mine = addresses.filter((address) => claimed.delete(address));
    if (mine.length === 0) return;
    try {
      await state.writeAhead(mine.map((address): JournalRecord => [ledger.firewall, alias, address, null]));
    } finally {
      for (const address of mine) ledger[how](alias, address);
      state.markDirty();
    }
  }

  /**
   * set_item + reconfigure for Host(s)/Network(s) aliases: add to and remove from the content
   * as read (null: the alias is gone) only what this batch changes, write it back, apply.
   */
  private async bulk(alias: string, { kind, uuid, content: read }: { kind: 'host' | 'network'; uuid: string; content: readonly string[] | null }, { adds, deletes, claimed }: AliasChanges): Promise<string[]> {
    const { client, ledger, aliasInfo } = this.options;
    if (read === null) {
      aliasInfo.clear();
      throw new Error(`OPNsense ${this.firewall}: alias "${alias}" disappeared from config while being updated; will look it up again`);
    }
    const content = new Map(read.map((entry) => [pfRendering(entry), entry]));
    // Already there, and not because of the bridge: someone else's entry, never to be removed by it.
    await this.takeBack(
      alias,
      adds.filter((address) => content.has(address)),
      claimed,
      'disown',
    );
    let changed = false;
    for (const address of adds) {
      if (content.has(address)) continue;
      content.set(address, kind === 'network' && !address.includes('/') ? `${address}/${address.includes(':') ? 128 : 32}` : address);
      changed = true;
    }
    for (const address of deletes) changed = content.delete(address) || changed;
    if (changed) await client.setAliasContent(uuid, [...content.values()], alias);
    await client.reconfigure();

    // A reconfigure that overlaps another one answers ok without applying: check pf.
    const live = new Set(await client.list(alias));
    const missing = adds.filter((address) => !live.has(address)).length;
    const left = deletes.filter((address) => live.has(address)).length;
    if (missing > 0 || left > 0) {
      // If pf never shows it (alias disabled, table limit, nested alias), one address at a
      // time must take over, or this batch would hold up every alias of this firewall.
      this.options.aliasInfo.avoidBulk(alias);
      throw new Error(
        `OPNsense ${this.firewall}: alias "${alias}" was saved but pf does not show it yet (${missing} missing, ${left} still present; probably another reconfigure was running); will apply again`,
      );
    }
    for (const address of deletes) ledger.remove(alias, address);
    return adds;
  }

  private async refuseNetworks(alias: string, { adds, claimed, refused }: AliasChanges): Promise<string[]> {
    const hosts: string[] = [];
    await this.takeBack(
      alias,
      adds.filter((address) => address.includes('/')),
      claimed,
      'unclaim',
    );
    for (const address of adds) {
      if (!address.includes('/')) {
        hosts.push(address);
        continue;
      }
      const message = `OPNsense ${this.firewall}: alias "${alias}" is a Host(s) alias and cannot hold the network ${address}; change the alias type to Network(s) or External (advanced) on the firewall, or map this jail to another alias`;
      refused.push({ change: { target: alias, action: 'ban', address }, problem: { what: message, fix: aliasFix(alias) } });
      const held = this.throttle.pass(`${alias}\u0000host-network`);
      if (held === null) continue;
      this.options.log.error({ firewall: this.firewall, alias, address }, `${message}${held > 0 ? ` (${held} more network(s) refused since the last message)` : ''}`);
    }
    return hosts;
  }

  /**
   * An address equal to a Host(s)/Network(s) alias's first config entry is in config already,
   * and alias_util would store it a second time (OPNsense's `!array_search` bug), so that a
   * later delete leaves a copy behind: it is not sent (pf gets it back from config at the next
   * reload). `content` is read for this batch, as the bridge's own adds change the first
   * entry. Claimed by this batch, it is someone else's.
   */
  private async skipFirstEntry(alias: string, content: readonly string[], changes: AliasChanges): Promise<string[]> {
    const first = content[0] === undefined ? null : pfRendering(content[0]);
    if (first === null || !changes.adds.includes(first)) return changes.adds;
    this.options.log.debug({ firewall: this.firewall, alias, address: first }, `not adding ${first} to alias ${alias}: it is the alias's first config entry already, and OPNsense would store it twice`);
    await this.takeBack(alias, [first], changes.claimed, 'disown');
    return changes.adds.filter((address) => address !== first);
  }

  /** Logs (with the fix) why the bulk path failed; until the next reconciliation the alias goes address by address. */
  private bulkRefused(alias: string, error: OpnsenseError): void {
    this.options.aliasInfo.avoidBulk(alias, error.message);
    const held = this.throttle.pass(`${alias}\u0000bulk`);
    if (held === null) return;
    this.options.log.error(
      { firewall: this.firewall, alias, kind: error.kind },
      `${error.message}${held > 0 ? ` (and ${held} more like it since the last message)` : ''} (in Firewall: Aliases, alias ${alias}); until the next reconciliation, changes to alias ${alias} go one address per call, and what the firewall refuses is logged address by address`,
    );
  }

  private report(alias: string, error: OpnsenseError): void {
    const held = this.throttle.pass(`${alias}\u0000${error.kind}`);
    if (held === null) return;
    this.options.log.error(
      { firewall: this.firewall, alias, kind: error.kind },
      `${error.message}${held > 0 ? ` (and ${held} more like it since the last message)` : ''}; the change stays wanted and reconciliation tries again`,
    );
  }
}

function bulkRefusal(error: unknown): error is OpnsenseError {
  if (!(error instanceof OpnsenseError)) return false;
  return error.kind === 'failed' || error.kind === 'forbidden' || (error.kind === 'server' && error.endpoint.endsWith('/reconfigure'));
}

/** Errors about one alias or address: logged and dropped rather than holding back the whole firewall. */
function concernsOneAddress(error: unknown, add: boolean, address: string): error is OpnsenseError {
  if (!(error instanceof OpnsenseError)) return false;
  if (error.kind === 'nonexistent_alias' || error.kind === 'not_an_address' || error.kind === 'failed') return true;
  // OPNsense answers 500 when a Host(s) alias is given a network.
  return error.kind === 'server' && add && address.includes('/');
}
