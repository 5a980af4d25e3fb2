import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../../src/log.js';
import { replaceFile, syncDir } from '../../state-dir/durable-file.js';
import { LogThrottle } from '../../../src/log-throttle.js';

/** Changes are gathered at least this long before a snapshot is written, so a burst is a few writes, not one per ban. */
const STATE_WRITE_DELAY_MS = 1_000;
/**
 * Serialising a snapshot blocks the event loop for as long as it takes (about a second for a
 * million addresses), so snapshots are also spaced by this many times that: the agent spends
 * at most about 1/20 of its time on them, however big the state grows.
 */
const SNAPSHOT_SPACING_FACTOR = 20;

/** The write-ahead records that are not in the snapshot yet, and the lines that were not JSON (a torn last line after a crash). */
export interface Journal {
  records: unknown[];
  skipped: number;
}

/**
 * The line that starts each journal segment: the snapshot generation its records follow.
 * A journal (or segment) without one predates generations and follows generation 0.
 */
interface JournalHeader {
  generation: number;
}

function isHeader(line: unknown): line is JournalHeader {
  return typeof line === 'object' && line !== null && !Array.isArray(line) && Number.isSafeInteger((line as JournalHeader).generation);
}

/** The generation a snapshot was written as (0: written before generations, or none). */
function generationOf(json: unknown): number {
  const generation = typeof json === 'object' && json !== null ? (json as Partial<JournalHeader>).generation : undefined;
  return Number.isSafeInteger(generation) && (generation as number) >= 0 ? (generation as number) : 0;
}

/**
 * One JSON state file (the snapshot) plus its write-ahead journal (`<path>.journal`, one JSON
 * record per line).
 *
 * Why two files: what must be on disk before the firewall is called (the bridge's claim on
 * the addresses a batch is about to add) is small, while the whole state may hold a million
 * addresses. Writing the snapshot before every batch would cost O(state) per batch, so a
 * burst of N bans would cost O(N²). Instead `writeAhead()` appends just the batch's records
 * to the journal and fsyncs it (O(batch), and it throws when that did not happen, so the
 * caller does not go ahead), while the snapshot is debounced (`markDirty()`); each snapshot
 * includes everything the journal held and then empties it. `load()` + `readJournal()` give
 * the snapshot and the records written after it.
 *
 * The snapshot is written crash-safely: a temp file is written and fsynced, renamed over the
 * old one, and the directory fsynced, so the file on disk is always either the old or the new
 * state, never a torn mix. Snapshots and journal appends never overlap: a record appended
 * before a snapshot is serialised is in that snapshot, one appended after it survives the
 * truncation that follows.
 *
 * Generations: each snapshot stores its number (`serialise(generation)` must write it as the
 * root's `generation` field), and the first append after a snapshot starts a journal segment
 * with a header line naming the generation it follows. The snapshot is renamed into place
 * before the journal is emptied, so a crash in between (or a failed truncation) leaves records
 * the snapshot already holds; replaying them would bring back holders as they were before
 * it. `readJournal()` therefore only returns records of segments that follow the loaded
 * snapshot's generation, and drops the others.
 */
export class StateFile {
  /** Completed snapshot writes, for tests and status. */
  writes = 0;
  /** Completed journal appends. */
  journalWrites = 0;
  private dirty = false;
  private disabled = false;
  private timer: NodeJS.Timeout | undefined;
  /** Snapshots and appends run one at a time, in order. */
  private queue: Promise<void> = Promise.resolve();
  private lastSerialiseMs = 0;
  /** The journal file exists and its directory entry is durable. */
  private journalCreated = false;
  private tornTail = false;
  /** The generation of the snapshot on disk (loaded, or last written). */
  private generation = 0;
  /** The next append starts a segment with a header naming `generation`. */
  private needsHeader = true;
  private readonly throttle = new LogThrottle();

  constructor(
    readonly path: string,
    /** Serialises the state as a JSON object whose `generation` field is the given number. */
    private readonly serialise: (generation: number) => string,
    private readonly log: Logger,
    private readonly delayMs = STATE_WRITE_DELAY_MS,
  ) {}

  get journalPath(): string {
    return `${this.path}.journal`;
  }

  /**
   * False when the state cannot be saved: state_dir could not be created or written at
   * start, or the file could not be moved aside (logged when it happened). The bridge then
   * works without saving, and forgets on restart.
   */
  get persistent(): boolean {
    return !this.disabled;
  }

  /**
   * Reads and decodes the file; null when there is none yet. A file that cannot be read or
   * decoded is moved aside (never overwritten) and null returned, with a loud error. Also
   * checks that state_dir can be written: if not, persistence is off from the start (loudly).
   */
  async load<T>(decode: (json: unknown) => T): Promise<T | null> {
    const dir = dirname(this.path);
    try {
      await mkdir(dir, { recursive: true, mode: 0o750 });
    } catch (error) {
      return this.disable(`cannot create state_dir ${dir} (${(error as Error).message})`);
    }
    let text: string | undefined;
    let decoded: T | null = null;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') decoded = await this.setAside(`cannot be read (${(error as Error).message})`);
    }
    if (text !== undefined) {
      try {
        const json = JSON.parse(text) as unknown;
        decoded = decode(json);
        this.generation = generationOf(json);
      } catch (error) {
        decoded = await this.setAside(`is not a valid state file (${(error as Error).message})`);
      }
    }
    return this.disabled ? decoded : this.probe(decoded);
  }

  /**
   * The records appended since the last snapshot (none when there is no journal): those of
   * journal segments that follow the loaded snapshot's generation. Call after load().
   */
  async readJournal(): Promise<Journal> {
    let text: string;
    try {
      text = await readFile(this.journalPath, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // None, or no state_dir at all (already reported by load()).
      if (code === 'ENOENT' || code === 'ENOTDIR') return { records: [], skipped: 0 };
      this.log.error({ stateFile: this.journalPath }, `cannot read the journal ${this.journalPath} (${(error as Error).message}); addresses the bridge added since the last save are unknown to it and will not be removed by it`);
      return { records: [], skipped: 0 };
    }
    // A crash in the middle of an append leaves a torn last line: the next record starts on a line of its own.
    this.tornTail = text !== '' && !text.endsWith('\n');
    const journal: Journal = { records: [], skipped: 0 };
    let follows = 0; // a journal without a header predates generations
    let stale = 0;
    const staleGenerations = new Set<number>();
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line) as unknown;
      } catch {
        journal.skipped += 1; // a record torn by a crash: its batch was never sent
        continue;
      }
      if (isHeader(parsed)) {
        follows = parsed.generation;
      } else if (follows === this.generation) {
        journal.records.push(parsed);
      } else {
        stale += 1;
        staleGenerations.add(follows);
      }
    }
    // Appends go on in the current segment only if it follows the loaded snapshot.
    this.needsHeader = follows !== this.generation;
    if (stale > 0) {
      this.log.info(
        { stateFile: this.journalPath, stale, journalGenerations: [...staleGenerations], snapshotGeneration: this.generation },
        `ignored ${stale} journal record(s) written before the snapshot of generation ${this.generation} (already in it: the journal was not emptied after that snapshot was saved)`,
      );
    }
    // A snapshot also empties a journal of stale records.
    if (journal.records.length > 0 || journal.skipped > 0 || stale > 0) this.markDirty();
    return journal;
  }

  markDirty(): void {
    this.dirty = true;
    this.schedule();
  }

  /**
   * Appends records to the journal and fsyncs it; resolves once they are on disk. Throws
   * (after logging) when they could not be written, so the caller does not act on them.
   * Without persistence (see `persistent`) it does nothing.
   */
  async writeAhead(records: readonly unknown[]): Promise<void> {
    if (records.length === 0) return;
    const text = records.map((record) => `${JSON.stringify(record)}\n`).join('');
    await this.exclusive(async () => {
      if (this.disabled) return;
      const header = this.needsHeader ? `${JSON.stringify({ generation: this.generation } satisfies JournalHeader)}\n` : '';
      try {
        await this.append(header + text);
      } catch (error) {
        throw this.failed('record the addresses it is about to add in', this.journalPath, error, 'the changes wait until it can');
      }
      this.needsHeader = false;
      this.journalWrites += 1;
    });
  }

  /**
   * Writes the snapshot now if anything changed; resolves once it is on disk. Throws (after
   * logging; a later write is scheduled) when it could not be written.
   */
  async flush(): Promise<void> {
    await this.exclusive(async () => {
      if (!this.dirty || this.disabled) return;
      clearTimeout(this.timer);
      this.timer = undefined;
      this.dirty = false;
      try {
        await this.snapshot();
      } catch (error) {
        this.dirty = true;
        this.schedule();
        throw this.failed('save', this.path, error, 'will retry');
      }
    });
  }

  /** Writes what is left; a failure is logged, not thrown. */
  async close(): Promise<void> {
    await this.flush().catch(() => undefined);
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer || this.disabled) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        // Logged in flush(); nothing may escape a timer as an unhandled rejection.
        this.flush().catch(() => undefined);
      },
      Math.max(this.delayMs, SNAPSHOT_SPACING_FACTOR * this.lastSerialiseMs),
    );
    this.timer.unref();
  }

  private exclusive(task: () => Promise<void>): Promise<void> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async snapshot(): Promise<void> {
    const started = performance.now();
    const generation = this.generation + 1;
    const text = this.serialise(generation); // may throw (e.g. a state too big for one string): handled by the caller
    this.lastSerialiseMs = performance.now() - started;
    await replaceFile(this.path, text);
    // From now on the journal's records are in the snapshot: whatever is appended next starts a
    // new segment, so records left behind (the truncation below failing, or a crash before it)
    // are told apart from later ones.
    this.generation = generation;
    this.needsHeader = true;
    // The rename itself is only durable once the directory is synced.
    await syncDir(dirname(this.path));
    // Everything the journal held is in the snapshot now.
    await this.truncateJournal();
    this.writes += 1;
  }

  private async append(text: string): Promise<void> {
    const file = await open(this.journalPath, 'a', 0o640);
    try {
      if (text !== '') {
        const torn = this.tornTail;
        this.tornTail = true; // until the write is known complete: a failed write may leave part of a line
        await file.appendFile(torn ? `\n${text}` : text);
        this.tornTail = false;
      }
      await file.sync();
    } finally {
      await file.close();
    }
    if (!this.journalCreated) {
      await syncDir(dirname(this.path));
      this.journalCreated = true;
    }
  }

  private async truncateJournal(): Promise<void> {
    let file;
    try {
      file = await open(this.journalPath, 'r+');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    try {
      await file.truncate(0);
      await file.sync();
      this.tornTail = false;
    } finally {
      await file.close();
    }
  }

  /** Creates the journal, which proves that state_dir can be written; turns persistence off if not. */
  private async probe<T>(loaded: T | null): Promise<T | null> {
    try {
      await this.append('');
    } catch (error) {
      this.disable(`cannot write in state_dir ${dirname(this.path)} (${(error as Error).message})`);
    }
    return loaded;
  }

  private disable(problem: string): null {
    this.disabled = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.log.error(
      { stateFile: this.path },
      `${problem}; the OPNsense bridge runs without saving its state, so a restart forgets what it added: set state_dir to a directory this user may write (default /var/lib/syncfail2ban)`,
    );
    return null;
  }

  private failed(what: string, path: string, error: unknown, then: string): Error {
    const message = `cannot ${what} the OPNsense bridge state file ${path} (${(error as Error).message}); ${then}: check free space and permissions of ${dirname(this.path)}`;
    if (this.throttle.pass(`${what}\u0000${(error as Error).message}`) !== null) this.log.error({ stateFile: path }, message);
    return new Error(message, { cause: error });
  }

  private async setAside(problem: string): Promise<null> {
    const aside = `${this.path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    try {
      await rename(this.path, aside);
    } catch (error) {
      this.disabled = true;
      this.log.error(
        { stateFile: this.path },
        `state file ${this.path} ${problem}, and moving it aside failed (${(error as Error).message}); the OPNsense bridge starts empty and will not overwrite it: fix its permissions or remove it, then restart`,
      );
      return null;
    }
    this.log.error(
      { stateFile: this.path, movedTo: aside },
      `state file ${this.path} ${problem}; moved it to ${aside} and started with an empty state. Addresses the bridge added before are unknown to it now and will never be removed by it: check the aliases on the firewall, and re-send current bans with "syncfail2ban-client -f <jail>" on each host`,
    );
    return null;
  }
}
