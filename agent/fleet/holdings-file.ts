import { closeSync, existsSync, fdatasyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { JAIL_NAME, NODE_ID } from '../../src/event.js';
import { isCanonical } from '../../src/ip.js';
import { replaceFile, syncDir } from '../state-dir/durable-file.js';
import { ADOPTED, MANUAL, type Holdings } from './holdings.js';

const SNAPSHOT_FILE = 'holdings.snapshot';
const JOURNAL_FILE = 'holdings.journal';
/** The journal a compaction is writing into the snapshot, until the snapshot is on disk. */
const COMPACTING_FILE = 'holdings.journal.compacting';
/** The journal is fsynced at most this long after a change (what a power cut may lose; a kill -9 loses nothing). */
const SYNC_INTERVAL_MS = 1_000;
/** The journal is compacted into the snapshot once it has this many lines, or more lines than there are holdings… */
const COMPACT_MIN_LINES = 50_000;
/** …this long after it grew past that, off the path that took the change. */
const COMPACT_DELAY_MS = 1_000;

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
 * The holdings store on disk, in state_dir: a compacted snapshot (`holdings.snapshot`) and
 * an append-only journal of every change since (`holdings.journal`), both text, one change
 * per line, replayed in order at start.
 *
 * Durability: `append()` writes the lines with one write(2) before it returns, so once an
 * event was taken into the store it is in the kernel's page cache and survives a kill -9 of
 * the agent at any later moment. The journal is fsynced within SYNC_INTERVAL_MS (and at
 * stop), so a power cut loses at most that last second.
 *
 * Compaction runs from a timer, never in append(): in one step it serialises the holdings
 * and moves the journal aside (`holdings.journal.compacting`; appends go on in a new
 * journal), then writes the snapshot without blocking, and removes the moved journal once
 * the snapshot is on disk. A start replays snapshot, moved journal (if any) and journal in
 * order. Replaying is idempotent (each line sets one holding present or absent), so a crash
 * anywhere in a compaction (snapshot renamed, moved journal not yet removed) replays lines
 * the snapshot already has, with the same result.
 */
export class HoldingsFile {
  private readonly snapshotPath: string;
  private readonly journalPath: string;
  private readonly compactingPath: string;
  /** Lines in the journal now. */
  private journalLines = 0;
  private fd: number | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private compactTimer: NodeJS.Timeout | undefined;
  private compacting: Promise<void> | undefined;
  private lastError: string | null = null;

  constructor(
    readonly dir: string,
    /** The holdings the store loads into and describes. */
    private readonly holdings: Holdings,
  ) {
    this.snapshotPath = join(dir, SNAPSHOT_FILE);
    this.journalPath = join(dir, JOURNAL_FILE);
    this.compactingPath = join(dir, COMPACTING_FILE);
  }

  /** The last write failure, until a write succeeds again. */
  get error(): string | null {
    return this.lastError;
  }

  /** Reads snapshot then journal into the holdings and opens the journal for appends. Throws when state_dir cannot be used. */
  load(): LoadResult {
    mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    const files = [this.snapshotPath, this.compactingPath, this.journalPath];
    const fresh = !files.some((path) => existsSync(path));
    let skipped = 0;
    let journal = '';
    for (const path of files) {
      const text = readIfThere(path);
      const lines = text.split('\n');
      if (path === this.journalPath) {
        journal = text;
        this.journalLines = lines.length;
      }
      for (const line of lines) if (line !== '' && !replay(this.holdings, line)) skipped += 1;
    }
    this.fd = openSync(this.journalPath, 'a', 0o640);
    // A crash mid-append leaves a torn last line: the next line starts on its own.
    if (journal !== '' && !journal.endsWith('\n')) writeSync(this.fd, '\n');
    return { fresh, skipped };
  }

  /** Appends changes to the journal in one write; schedules a compaction when the journal has grown past the holdings it describes. */
  append(changes: readonly Change[]): void {
    if (changes.length === 0 || this.fd === undefined) return;
    try {
      writeSync(this.fd, changes.map((change) => `${change.join(' ')}\n`).join(''));
      this.journalLines += changes.length;
      this.lastError = null;
    } catch (error) {
      this.lastError = `cannot write the holdings journal ${this.journalPath} (${(error as Error).message}): changes are kept in memory only, a restart loses them; free space in or fix the permissions of state_dir ${this.dir}`;
      return;
    }
    this.scheduleSync();
    if (this.journalLines > Math.max(COMPACT_MIN_LINES, this.holdings.size)) this.scheduleCompaction();
  }

  /** Compacts and closes; the store is on disk. */
  async close(): Promise<void> {
    if (this.fd === undefined) return;
    clearTimeout(this.syncTimer);
    clearTimeout(this.compactTimer);
    await this.compacting;
    await this.compact();
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  private scheduleCompaction(): void {
    if (this.compactTimer || this.compacting) return;
    this.compactTimer = setTimeout(() => {
      this.compactTimer = undefined;
      this.compacting = this.compact().finally(() => (this.compacting = undefined));
    }, COMPACT_DELAY_MS);
    this.compactTimer.unref();
  }

  /** Writes every holding (and remembered release) into a new snapshot, renamed over the old one once it is on disk; the journal it holds goes. Never throws. */
  private async compact(): Promise<void> {
    if (this.fd === undefined) return;
    try {
      const text = serialise(this.holdings);
      // Unless an earlier compaction failed and left its moved journal (then both stay until one succeeds).
      if (!existsSync(this.compactingPath)) this.moveJournalAside();
      await replaceFile(this.snapshotPath, text);
      await syncDir(this.dir);
      unlinkSync(this.compactingPath);
      this.lastError = null;
    } catch (error) {
      // The journals still hold every change: nothing is lost, they only grow.
      this.lastError = `cannot write the holdings snapshot ${this.snapshotPath} (${(error as Error).message}); the journal keeps growing until it can: free space in or fix the permissions of state_dir ${this.dir}`;
    }
  }

  /** In the same step as the holdings were serialised: what the journal holds now is in the snapshot being written, what follows is not. */
  private moveJournalAside(): void {
    const old = this.fd!;
    fdatasyncSync(old);
    renameSync(this.journalPath, this.compactingPath);
    this.fd = openSync(this.journalPath, 'a', 0o640);
    this.journalLines = 0;
    closeSync(old);
  }

  private scheduleSync(): void {
    if (this.syncTimer) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      if (this.fd === undefined) return;
      try {
        fdatasyncSync(this.fd);
      } catch (error) {
        this.lastError = `cannot sync the holdings journal ${this.journalPath} (${(error as Error).message})`;
      }
    }, SYNC_INTERVAL_MS);
    this.syncTimer.unref();
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

function readIfThere(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
}
