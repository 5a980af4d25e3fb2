import { join } from 'node:path';
import { ConfigError } from '../../src/config-reader.js';
import type { Logger } from '../../src/log.js';
import type { Problem } from '../../src/status.js';
import { StateFileError } from '../state-dir/durable-file.js';
import { SnapshotJournal } from '../state-dir/snapshot-journal.js';
import type { Holdings } from './holdings.js';
import { lineWeight, Replay, serialise, type Line } from './store-lines.js';

const SNAPSHOT_FILE = 'holdings.snapshot';
const JOURNAL_FILE = 'holdings.journal';
/** The journal is compacted into the snapshot once its lines touch this many holdings, or more than there are. */
const COMPACT_MIN_LINES = 50_000;
/**
 * A compaction waits this long after the journal grew past the holdings: a snapshot of
 * 100,000 arrives over a few seconds, and serialising the store (with the snapshot still
 * being received) in the middle of it took the agent 100 ms it needed for the parts.
 */
const COMPACT_DELAY_MS = 5_000;
/** The most a holding takes in lines: "+ ", an origin and a jail of 64 characters, a network address, "\n"; and its end, "E " and the same with an end in ms. */
const MAX_LINE_BYTES = 2 + 65 + 65 + 44 + (2 + 65 + 65 + 16 + 44);

export interface LoadResult {
  /** Neither file existed: the first start with a store (an upgrade, or a new install). */
  fresh: boolean;
  /** Lines that were not valid (a line torn by a crash, or a hand edit), left out. */
  skipped: number;
  /** The highest snapshot mark the replay gave a holding (see Holdings.mark). */
  marks: number;
}

/**
 * The holdings store on disk, in state_dir: a snapshot (`holdings.snapshot`) and a journal
 * of every change since (`holdings.journal`), kept by a SnapshotJournal (durability,
 * compaction, full disks: see there). The records are the lines of store-lines.ts, replayed
 * in order at start.
 */
export class HoldingsFile {
  private readonly store: SnapshotJournal;
  /** Holdings the journal's lines touch since the last snapshot was serialised (a `P` line touches many). */
  private journalWeight = 0;

  constructor(
    readonly dir: string,
    /** The holdings the store loads into and describes. */
    private readonly holdings: Holdings,
    log: Logger,
    /** What a snapshot holds beyond the holdings: the snapshots being received and released. */
    inProgress: () => Iterable<Line>,
    /** Reads, writes nothing (a dry run). */
    readOnly = false,
  ) {
    this.store = new SnapshotJournal({
      snapshot: join(dir, SNAPSHOT_FILE),
      journal: join(dir, JOURNAL_FILE),
      what: 'the holdings store',
      serialise: () => {
        this.journalWeight = 0;
        return serialise(holdings, inProgress());
      },
      log,
      compactDelayMs: COMPACT_DELAY_MS,
      weight: (record) => lineWeight(record.split(' ') as Line),
      // A snapshot of a full store (and of its released addresses), and a journal that compacts at as many again.
      maxBytes: 4 * holdings.limits.total * MAX_LINE_BYTES,
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
    const replay = new Replay(this.holdings);
    const line = (text: string) => {
      if (!replay.line(text)) skipped += 1;
    };
    this.journalWeight = 0;
    const record = (text: string) => {
      line(text);
      this.journalWeight += lineWeight(text.split(' ') as Line);
    };
    const { fresh, stale } = this.store.load({ snapshot: line, record });
    // Records the snapshot already holds (a crash before the journal was emptied) go at the next compaction.
    this.journalWeight += stale;
    return { fresh, skipped, marks: replay.marks };
  }

  /** Appends lines to the journal; schedules a compaction when the journal has grown past the holdings it describes. */
  append(lines: readonly Line[]): void {
    if (lines.length === 0) return;
    this.store.append(lines.map((line) => line.join(' ')));
    for (const line of lines) this.journalWeight += lineWeight(line);
    if (this.journalWeight > Math.max(COMPACT_MIN_LINES, this.holdings.size)) this.store.compactSoon();
  }

  /** Compacts and closes; the store is on disk. */
  async close(): Promise<void> {
    await this.store.close();
  }
}

/** Why the holdings store cannot be kept in `dir`, as the ConfigError the agent exits 78 with. */
export function holdingsStoreError(dir: string, error: unknown): ConfigError {
  if (error instanceof StateFileError) return new ConfigError(`state_dir: ${error.message}; fix: ${error.fix}`);
  return new ConfigError(
    `state_dir: cannot keep the holdings store in ${dir} (${(error as Error).message}); fix: set state_dir to a directory this user may create and write (default /var/lib/syncfail2ban)`,
  );
}
