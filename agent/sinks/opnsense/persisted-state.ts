import { parseAddress } from '../../../src/ip.js';
import type { FirewallLedger } from './ledger.js';

export const STATE_FILE_NAME = 'opnsense-bridge.json';
export const JOURNAL_FILE_NAME = `${STATE_FILE_NAME}.journal`;
/** The ledger holds at most what the projection wants on each firewall: far less than this. */
export const MAX_STATE_FILE_BYTES = 256 * 2 ** 20;

/**
 * The bridge's state, kept by a SnapshotJournal (agent/state-dir): its snapshot is one line
 * of JSON, version 1:
 *   added:  firewall base URL -> alias -> addresses the bridge added there
 *   wanted: alias -> address -> holders ("origin/jail"), only in files written before the
 *           holdings store; read once, on its first start, to adopt them
 *   generation: in files written before SnapshotJournal, which keeps it in a header line
 * and its journal: one JournalRecord per line (JSON) for every address added or removed
 * since that snapshot was written.
 */
interface StateV1 {
  version: 1;
  wanted?: Record<string, Record<string, string[]>>;
  added: Record<string, Record<string, string[]>>;
  generation?: number;
}

/** Where the firewalls' ledger changes go. */
export interface LedgerJournal {
  /** On disk (fsynced) when it resolves; throws when the records are not, so the caller does not act on them. */
  writeAhead(records: readonly JournalRecord[]): Promise<void>;
  /** The ledger changed: a snapshot is written soon. */
  markDirty(): void;
}

/** The generation a snapshot written before SnapshotJournal kept in its JSON (always its second field). */
export function legacyGeneration(line: string): number {
  const match = /^\{"version":1,"generation":(\d{1,15}),/.exec(line);
  return match ? Number(match[1]) : 0;
}

export interface DecodedState {
  /** [alias, address, holder] */
  wanted: Array<[string, string, string]>;
  /** [firewall, alias, address] */
  added: Array<[string, string, string]>;
  /** Entries dropped because they are not canonical addresses or holders. */
  skipped: number;
}

/** The snapshot: one line. */
export function encodeBridgeState(ledgers: readonly FirewallLedger[]): string {
  const state: StateV1 = {
    version: 1,
    added: Object.fromEntries(ledgers.map((ledger) => [ledger.firewall, ledger.toJSON()])),
  };
  return `${JSON.stringify(state)}\n`;
}

/**
 * A journal record, written before a batch is sent, for each address the batch adds (claims)
 * or removes on `firewall`: the address is the bridge's in `alias` (added, being added, or
 * being removed), and these are its holders now (none: no longer wanted). Replayed in order
 * over the snapshot, the records give the ledger and holders as they were at the crash.
 *
 * With `null` for holders, the address is NOT the bridge's in `alias` (a claim taken back:
 * the add failed, or someone else's entry was there already); its holders are unchanged.
 * Written before the ledger forgets the claim, so that replaying the earlier claim record
 * cannot make a foreign entry the bridge's again.
 */
export type JournalRecord = [firewall: string, alias: string, address: string, holders: string[] | null];

/** A journal record with its invalid holders left out, or null when it is not one. */
export function decodeJournalRecord(record: unknown): JournalRecord | null {
  if (!Array.isArray(record) || record.length !== 4) return null;
  const [firewall, alias, address, holders] = record as unknown[];
  if (typeof firewall !== 'string' || typeof alias !== 'string' || typeof address !== 'string' || !(holders === null || Array.isArray(holders))) return null;
  const parsed = parseAddress(address);
  if (!parsed.ok || parsed.address.text !== address) return null;
  if (holders === null) return [firewall, alias, address, null];
  return [firewall, alias, address, holders.filter((holder): holder is string => typeof holder === 'string' && HOLDER.test(holder))];
}

const HOLDER = /^[^/\s]{1,70}\/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Checks the shape strictly (throws saying what is wrong) and skips single entries that are not valid. */
export function decodeBridgeState(json: unknown): DecodedState {
  const root = record(json, 'the file');
  if (root.version !== 1) throw new Error(`version ${JSON.stringify(root.version)} is not 1`);
  const decoded: DecodedState = { wanted: [], added: [], skipped: 0 };
  const valid = (address: string) => {
    const parsed = parseAddress(address);
    if (parsed.ok && parsed.address.text === address) return true;
    decoded.skipped += 1;
    return false;
  };
  for (const [alias, addresses] of Object.entries(root.wanted === undefined ? {} : record(root.wanted, '"wanted"'))) {
    for (const [address, holders] of Object.entries(record(addresses, `"wanted" of alias ${alias}`))) {
      if (!valid(address)) continue;
      for (const holder of strings(holders, `holders of ${address}`)) {
        if (HOLDER.test(holder)) decoded.wanted.push([alias, address, holder]);
        else decoded.skipped += 1;
      }
    }
  }
  for (const [firewall, aliases] of Object.entries(record(root.added, '"added"'))) {
    for (const [alias, addresses] of Object.entries(record(aliases, `"added" of ${firewall}`))) {
      for (const address of strings(addresses, `"added" of ${firewall} alias ${alias}`)) {
        if (valid(address)) decoded.added.push([firewall, alias, address]);
      }
    }
  }
  return decoded;
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

function strings(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw new Error(`${what} is not a list of strings`);
  return value as string[];
}
