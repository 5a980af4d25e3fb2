import { join } from 'node:path';
import { JAIL_NAME, NODE_ID } from '../../src/event.js';
import { isCanonical } from '../../src/ip.js';
import type { Logger } from '../../src/log.js';
import type { Problem } from '../../src/status.js';
import { SnapshotJournal } from '../state-dir/snapshot-journal.js';
import { ADOPTED, MANUAL, MAX_HOLDINGS, type Holdings } from './holdings.js';

const SNAPSHOT_FILE = 'holdings.snapshot';
const JOURNAL_FILE = 'holdings.journal';
/** The journal is compacted into the snapshot once it has this many lines, or more lines than there are holdings. */
const COMPACT_MIN_LINES = 50_000;
/** The longest lines of a holding: "+ ", an origin and a jail of 64 characters, a network address, "\n"; and its end ("E ", the same with an end in ms). */
const MAX_HOLDING_BYTES = 2 + 65 + 65 + 44 + (2 + 65 + 65 + 16 + 44);
/** A snapshot of a full store is at most MAX_HOLDINGS holdings (and released addresses); a journal compacts at as many again. */
const MAX_FILE_BYTES = 2 * MAX_HOLDINGS * MAX_HOLDING_BYTES;

/**
 * One change, as a journal line: `+ origin jail address`, `- origin jail address`, and
 * `E origin jail end address`: the holding's end (ms since the epoch; -1 until unbanned).
 * The end has a line of its own, after the holding's `+`, so that an agent of an earlier
 * version, which skips the lines it does not know, still reads the holding (as held until
 * unbanned) and so never loses it.
 */
export type Change = ['+' | '-', origin: string, jail: string, address: string] | ['E', origin: string, jail: string, end: string, address: string];

export interface LoadResult {
  /** Neither file existed: the first start with a store (an upgrade, or a new install). */
  fresh: boolean;
  /** Lines that were not valid (a line torn by a crash, or a hand edit), left out. */
  skipped: number;
}

/**
 * The holdings store on disk, in state_dir: a snapshot (`holdings.snapshot`) and a journal
 * of every change since (`holdings.journal`), kept by a SnapshotJournal (durability,
 * compaction, full disks: see there). This file is the record encoding: text, one change per
 * line, replayed in order at start; replaying is idempotent (each line sets one holding
 * present or absent).
 */
export class HoldingsFile {
  private readonly store: SnapshotJournal;

  constructor(
    readonly dir: string,
    /** The holdings the store loads into and describes. */
    private readonly holdings: Holdings,
    log: Logger,
    /** Reads, writes nothing (a dry run). */
    readOnly = false,
  ) {
    this.store = new SnapshotJournal({
      snapshot: join(dir, SNAPSHOT_FILE),
      journal: join(dir, JOURNAL_FILE),
      what: 'the holdings store',
      serialise: () => serialise(holdings),
      log,
      maxBytes: MAX_FILE_BYTES,
      readOnly,
    });
  }

  /** What is not on disk as it should be, with the fix. */
  problems(): Problem[] {
    return this.store.problems();
  }

  /** Reads snapshot then journal into the holdings and opens the journal for appends. Throws when state_dir cannot be used. */
  load(): LoadResult {
    let skipped = 0;
    const line = (text: string) => {
      if (!replay(this.holdings, text)) skipped += 1;
    };
    const { fresh } = this.store.load({ snapshot: line, record: line });
    return { fresh, skipped };
  }

  /** Appends changes to the journal; schedules a compaction when the journal has grown past the holdings it describes. */
  append(changes: readonly Change[]): void {
    if (changes.length === 0) return;
    this.store.append(changes.map((change) => change.join(' ')));
    if (this.store.journalRecords > Math.max(COMPACT_MIN_LINES, this.holdings.size)) this.store.compactSoon();
  }

  /** Compacts and closes; the store is on disk. */
  async close(): Promise<void> {
    await this.store.close();
  }
}

function serialise(holdings: Holdings): string {
  const lines: string[] = [];
  for (const jail of holdings.jailNames()) {
    for (const [address, origins] of holdings.entries(jail)) for (const origin of origins) lines.push(`+ ${origin} ${jail} ${address}\n`);
  }
  for (const jail of holdings.releasedJails()) for (const address of holdings.released(jail)) lines.push(`~ ${jail} ${address}\n`);
  for (const { origin, jail, address, end } of holdings.leases.entries()) lines.push(`E ${origin} ${jail} ${end} ${address}\n`);
  return lines.join('');
}

/** Applies one line; false when it is not a valid line (validated as strictly as a network event). */
function replay(holdings: Holdings, line: string): boolean {
  const fields = line.split(' ');
  if (fields[0] === '~' && fields.length === 3) {
    const [, jail, address] = fields as [string, string, string];
    if (!JAIL_NAME.test(jail) || !isCanonical(address)) return false;
    if (!holdings.isHeld(jail, address)) holdings.noteReleased(jail, address);
    return true;
  }
  if (fields[0] === 'E' && fields.length === 5) {
    const [, origin, jail, end, address] = fields as [string, string, string, string, string];
    if (!/^(-1|\d{1,15})$/.test(end) || !isCanonical(address)) return false;
    if (holdings.origins(jail, address).includes(origin)) holdings.leases.set(origin, jail, address, end === '-1' ? undefined : Number(end));
    return true;
  }
  if ((fields[0] !== '+' && fields[0] !== '-') || fields.length !== 4) return false;
  const [op, origin, jail, address] = fields as [string, string, string, string];
  if (!(origin === ADOPTED || origin === MANUAL || NODE_ID.test(origin)) || !JAIL_NAME.test(jail) || !isCanonical(address)) return false;
  if (op === '+') holdings.add(origin, jail, address);
  else holdings.remove(origin, jail, address);
  return true;
}
