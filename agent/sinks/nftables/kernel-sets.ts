import { NFT_HOOKS } from '../../../src/config-nftables.js';
import type { Logger } from '../../../src/log.js';
import type { Problem } from '../../../src/status.js';
import { ShardedMap } from '../../fleet/big-maps.js';
import type { Change } from '../../fleet/projection.js';
import type { Backend, Rejection } from '../batcher.js';
import { NftError, type Nft } from './nft.js';
import { parseTableListing, type TableListing } from './nft-listing.js';
import { ALL_SETS, ElementScript, type Family, isNetworkSet, SETS, type SetElement, setFor, TABLE, TABLE_SPEC, tableScript, type ScriptElement, type TableShape, toElement } from './nft-script.js';
import { networkCover } from './network-cover.js';

/** An element's kernel timeout may differ this much from its ban's end before it is rewritten. */
const RETIME_SLACK_MS = 30_000;

export interface KernelSetsOptions {
  nft: Nft;
  shape: TableShape;
  /** Every address the sets should hold now (the sink's projection of the holdings). */
  wanted(): Iterable<string>;
  /** When the ban of an address ends (ms since the epoch); undefined: it does not. */
  endOf(address: string): number | undefined;
  log: Logger;
}

export interface ReconcileResult {
  /** Elements the sets lacked, written. */
  added: number;
  /** Elements the sets held and should not, removed. */
  removed: number;
  /** Elements whose timeout no longer matched their ban's end, rewritten. */
  retimed: number;
  /** set name -> elements it holds now */
  elements: Record<string, number>;
}

/** What a look at the table (nft -t) found. */
export interface TableCheck {
  /** The table, a set or a chain was missing or not as configured, and was rebuilt. */
  repaired: boolean;
  /** chain (hook) -> packets its rules blocked since the chain was built */
  blocked: Record<string, number>;
}

/**
 * The agent's nftables table and everything that writes to it: the batches of the sink
 * (this is its Backend), the reconciliation from the sets' own listing, and the look that
 * rebuilds a table someone flushed. One at a time, so that a listing and what is written
 * after it agree.
 *
 * Single addresses are added and removed one by one; a removal is written as "add, then
 * delete" in the same transaction, so an element that already expired (or was flushed)
 * never fails the batch. Networks cannot overlap in an interval set: whenever one changes,
 * its family's network set is rewritten whole, as the networks no wider one covers, in
 * the same transaction.
 */
export class KernelSets implements Backend {
  readonly name = 'nftables';
  /** The table is as `shape` says, as far as is known. */
  private ready = false;
  /** The table was built since the sets were last reconciled: they may lack elements. */
  private built = false;
  private lock: Promise<unknown> = Promise.resolve();
  /** Single addresses written with a timeout: address -> end (ms). The others have none. Split (big-maps.ts): a peer may hold 1,000,000s. */
  private ends = new ShardedMap<number>();

  constructor(private readonly options: KernelSetsOptions) {}

  /** Whether the sets need a reconciliation: the table was built (or rebuilt) since the last one. */
  get stale(): boolean {
    return this.built;
  }

  async apply(batch: Change[]): Promise<Rejection[]> {
    return this.exclusive(async () => {
      await this.ensureTable();
      const rejections: Rejection[] = [];
      const changes: Change[] = [];
      const sets: string[] = [];
      for (const change of batch) {
        const set = setFor(change.address);
        if (set) {
          changes.push(change);
          sets.push(set);
        } else {
          rejections.push({ change, problem: { what: `${JSON.stringify(change.address)} is not a canonical address; not written to nftables`, fix: 'report this as a bug: received addresses are validated before they reach a sink' } });
        }
      }
      const dropped = new Set<number>();
      for (;;) {
        const { script, ends, remembered, bans, unbans } = this.render(changes, sets, dropped);
        if (script.empty) return rejections;
        try {
          await this.options.nft.apply(script.content());
        } catch (error) {
          if (error instanceof NftError && error.kind === 'refused' && /No such file or directory/.test(error.message)) this.ready = false;
          const refused = error instanceof NftError ? script.ownersOf(error.lines) : undefined;
          if (!refused) throw error;
          // nft named the elements it refused: those are dropped, the rest goes again at once.
          const problem: Problem = { what: `nft refused element(s) of the fleet's bans: ${(error as Error).message}`, fix: (error as NftError).fix };
          this.options.log.error({ sink: this.name, addresses: refused.map((index) => changes[index]!.address) }, `${problem.what}; dropped`);
          for (const index of refused) {
            if (!dropped.has(index)) rejections.push({ change: changes[index]!, problem });
            dropped.add(index);
          }
          continue;
        }
        for (const index of remembered) {
          const { address } = changes[index]!;
          const end = ends[index]!;
          if (Number.isNaN(end)) this.ends.delete(address);
          else this.ends.set(address, end);
        }
        this.options.log.info({ sink: this.name, bans, unbans }, `applied ${bans} ban(s) and ${unbans} unban(s) to table inet ${TABLE}`);
        return rejections;
      }
    });
  }

  /**
   * Makes the sets hold exactly the projection: adds what is missing, removes what is not
   * wanted (the table is the agent's own), and rewrites elements whose timeout is off.
   */
  async reconcile(): Promise<ReconcileResult> {
    return this.exclusive(async () => {
      await this.ensureTable();
      this.built = false;
      const listing = await this.list(false);
      const result: ReconcileResult = { added: 0, removed: 0, retimed: 0, elements: {} };
      const script = new ElementScript();
      const wanted = split(this.options.wanted());
      const now = Date.now();
      const ends = new ShardedMap<number>();
      for (const family of [4, 6] as const) {
        const present = new ShardedMap<number | undefined>();
        for (const element of listing?.sets.get(SETS.hosts[family])?.elements ?? []) if (element.address) present.set(element.address, element.expiresS);
        const add: ScriptElement[] = [];
        const remove: ScriptElement[] = [];
        for (const { text } of wanted.hosts[family]) {
          const end = this.options.endOf(text);
          const entry = timed(text, end, now);
          if (end !== undefined) ends.set(text, end);
          if (!present.has(text)) {
            add.push(entry);
            result.added += 1;
          } else if (timeoutOff(present.get(text), entry.timeoutS)) {
            remove.push({ text });
            add.push(entry);
            result.retimed += 1;
          }
          present.delete(text);
        }
        for (const address of present.keys()) remove.push({ text: address });
        result.removed += present.size;
        removeElements(script, SETS.hosts[family], remove);
        script.elements('add', SETS.hosts[family], add);
        result.elements[SETS.hosts[family]] = wanted.hosts[family].length;

        const cover = this.cover(wanted.nets[family], now);
        const listed = listing?.sets.get(SETS.nets[family])?.elements ?? [];
        const listedExpiry = new Map(listed.flatMap((element) => (element.address ? [[element.address, element.expiresS] as const] : [])));
        const missing = cover.filter(({ text }) => !listedExpiry.has(text)).length;
        const extra = listed.length - (cover.length - missing);
        const retimed = cover.filter(({ text, timeoutS }) => listedExpiry.has(text) && timeoutOff(listedExpiry.get(text), timeoutS)).length;
        if (missing + extra + retimed > 0) {
          rewriteNets(script, family, cover);
          result.added += missing;
          result.removed += extra;
          result.retimed += retimed;
        }
        result.elements[SETS.nets[family]] = cover.length;
      }
      if (!script.empty) await this.options.nft.apply(script.content());
      this.ends = ends;
      return result;
    });
  }

  /**
   * A look at the table without its elements: builds it as configured the first time, and
   * rebuilds it whenever a part is missing or not as configured (someone flushed it).
   */
  async check(): Promise<TableCheck> {
    return this.exclusive(async () => {
      const listing = await this.list(true);
      const repaired = this.ready && (!listing || !this.asConfigured(listing));
      if (repaired) this.ready = false;
      const build = !this.ready;
      await this.ensureTable(listing);
      const blocked: Record<string, number> = {};
      for (const rule of listing && !build ? listing.rules : []) blocked[rule.chain] = (blocked[rule.chain] ?? 0) + rule.packets;
      return { repaired, blocked };
    });
  }

  /** Builds the table as configured (keeping the elements of its sets) unless that was done. */
  private async ensureTable(listing?: TableListing): Promise<void> {
    if (this.ready) return;
    // A set of another type or flags (made by hand, say) would refuse the "add set": it goes.
    const wrong = listing ? ALL_SETS.filter((name) => listing.sets.has(name) && !setAsConfigured(listing, name)) : [];
    const deletions = wrong.map((name) => `delete set inet ${TABLE} ${name}\n`).join('');
    await this.options.nft.apply(deletions + tableScript(this.options.shape));
    this.ready = true;
    this.built = true;
  }

  /** Every set of the right type, and a chain with its rules for each configured hook, none for the others. */
  private asConfigured(listing: TableListing): boolean {
    const { hooks } = this.options.shape;
    if (!ALL_SETS.every((name) => setAsConfigured(listing, name))) return false;
    return NFT_HOOKS.every((hook) =>
      hooks.includes(hook) ? listing.chains.get(hook) === hook && listing.rules.filter((rule) => rule.chain === hook).length === ALL_SETS.length : !listing.chains.has(hook),
    );
  }

  private async list(terse: boolean): Promise<TableListing | undefined> {
    const json = await this.options.nft.listJson(TABLE_SPEC, terse);
    return json === undefined ? undefined : parseTableListing(json);
  }

  /**
   * The script for a batch (but the changes `dropped`), each change's end (ms; NaN: none)
   * and the changes whose end to remember (or forget) once it went through. Per set, the
   * changes' indices, not an object per element: a batch has 25,000. Elements own their
   * change's index.
   */
  private render(changes: readonly Change[], sets: readonly string[], dropped: ReadonlySet<number>) {
    const now = Date.now();
    const script = new ElementScript();
    const ends = new Float64Array(changes.length).fill(Number.NaN);
    const remembered: number[] = [];
    /** set -> the changes whose element goes (or is written again with a new timeout), and those whose element is added */
    const removals = new Map<string, number[]>();
    const additions = new Map<string, number[]>();
    /** The network sets that change (each is rewritten whole), and network -> the change it came from. */
    const networkSets = new Set<string>();
    const networks = new Map<string, number>();
    let bans = 0;
    for (let index = 0; index < changes.length; index++) {
      if (dropped.has(index)) continue;
      const set = sets[index]!;
      const { action, address } = changes[index]!;
      if (action === 'ban') bans += 1;
      if (isNetworkSet(set)) {
        networkSets.add(set);
        networks.set(address, index);
      } else if (action === 'unban') {
        listIn(removals, set).push(index);
        if (this.ends.has(address)) remembered.push(index);
      } else {
        const end = this.options.endOf(address);
        const known = this.ends.get(address);
        // Re-adding an element does not change its timeout on every kernel: a changed end is written as remove and add.
        if (known !== undefined && (end === undefined || Math.abs(end - known) > RETIME_SLACK_MS)) listIn(removals, set).push(index);
        listIn(additions, set).push(index);
        if (end !== undefined) ends[index] = end;
        if (end !== undefined || known !== undefined) remembered.push(index);
      }
    }
    for (const [set, indices] of removals) removeElements(script, set, indices.map((index) => ({ text: changes[index]!.address, owner: index })));
    for (const [set, indices] of additions) {
      script.open('add', set);
      for (const index of indices) script.element(changes[index]!.address, timeoutS(ends[index]!, now), index);
      script.close();
    }
    if (networkSets.size > 0) {
      const wanted = split(this.options.wanted());
      for (const family of [4, 6] as const) {
        if (!networkSets.has(SETS.nets[family])) continue;
        rewriteNets(script, family, this.cover(wanted.nets[family], now).map((entry) => ({ ...entry, owner: networks.get(entry.text) })));
      }
    }
    return { script, ends, remembered, bans, unbans: changes.length - dropped.size - bans };
  }

  /** The networks no wider wanted one covers, each with its timeout. */
  private cover(networks: readonly SetElement[], now: number): ScriptElement[] {
    return networkCover(networks.map((element) => element.text)).map((text) => timed(text, this.options.endOf(text), now));
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.lock.then(work, work);
    this.lock = result.catch(() => undefined);
    return result;
  }
}

function timed(text: string, end: number | undefined, now: number): ScriptElement {
  return { text, timeoutS: end === undefined ? undefined : timeoutS(end, now) };
}

/** The seconds left until `end` (NaN: none, undefined), at least 1. */
function timeoutS(end: number, now: number): number | undefined {
  return Number.isNaN(end) ? undefined : Math.max(1, (end - now) / 1000);
}

function listIn<K, V>(map: Map<K, V[]>, key: K): V[] {
  let list = map.get(key);
  if (!list) map.set(key, (list = []));
  return list;
}

function split(addresses: Iterable<string>): Record<'hosts' | 'nets', Record<Family, SetElement[]>> {
  const split: Record<'hosts' | 'nets', Record<Family, SetElement[]>> = { hosts: { 4: [], 6: [] }, nets: { 4: [], 6: [] } };
  for (const address of addresses) {
    const element = toElement(address);
    if (element) split[element.kind][element.family].push(element);
  }
  return split;
}

/** Removal that cannot fail on an element already gone: add it (a no-op when present), then delete it. */
function removeElements(script: ElementScript, set: string, entries: readonly ScriptElement[]): void {
  const untimed = entries.map(({ text, owner }) => (owner === undefined ? { text } : { text, owner }));
  script.elements('add', set, untimed);
  script.elements('delete', set, untimed);
}

function rewriteNets(script: ElementScript, family: Family, cover: readonly ScriptElement[]): void {
  script.flushSet(SETS.nets[family]);
  script.elements('add', SETS.nets[family], cover);
}

function setAsConfigured(listing: TableListing, name: string): boolean {
  const set = listing.sets.get(name);
  const nets = name.startsWith('nets');
  return set !== undefined && set.type === (name.endsWith('v4') ? 'ipv4_addr' : 'ipv6_addr') && [...set.flags].sort().join(',') === (nets ? 'interval,timeout' : 'timeout');
}

/** Whether an element's kernel expiry (seconds left, or none) is off from the wanted timeout. */
function timeoutOff(expiresS: number | undefined, timeoutS: number | undefined): boolean {
  if (expiresS === undefined || timeoutS === undefined) return expiresS !== timeoutS;
  return Math.abs(expiresS - timeoutS) * 1000 > RETIME_SLACK_MS;
}
