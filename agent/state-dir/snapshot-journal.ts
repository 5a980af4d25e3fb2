import { closeSync, fdatasync, fstatSync, ftruncateSync, lstatSync, mkdirSync, renameSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../src/log.js';
import { LogThrottle } from '../../src/log-throttle.js';
import type { Problem } from '../../src/status.js';
import { existsNoFollow, NEWLINE, openForAppend, openForReading, readLines, replaceFile, ShortWriteError, StateFileError, syncDir, writeAll } from './durable-file.js';

/**
 * A state kept in state_dir as a snapshot plus a journal of the changes since: the one way
 * anything is kept there (the holdings store, the OPNsense bridge's ledger). Each user has
 * its own record encoding; this module knows files, lines, order and durability.
 *
 * How to use it:
 *
 *     const store = new SnapshotJournal({
 *       snapshot: join(stateDir, 'things.snapshot'),
 *       journal: join(stateDir, 'things.journal'),
 *       what: 'the things store',          // names it in log lines and problems
 *       serialise: () => text,             // the whole state: lines, each ending in "\n"
 *       maxBytes: 64 * 2 ** 20,            // the most the state can legitimately take
 *       log,
 *       readOnly: config.dryRun,           // a dry run reads state_dir, writes nothing
 *     });
 *     // At start, before anything changes. Throws a StateFileError (what, fix) when a file is
 *     // not one the agent wrote (a link, a directory, too big): stop the start with it.
 *     store.load({ snapshot: (line) => decode(line), record: (line) => replay(line) });
 *     // Each change: one line of text without "\n" that does not start with '{"generation"'.
 *     store.append(['+ thing 1']);         // survives a kill -9 once this returns
 *     await store.writeAhead(['...']);     // on disk (fsynced) when it resolves; throws, nothing kept, if not
 *     if (store.journalRecords > limit) store.compactSoon(); // or markDirty() for changes no record says
 *     part.status().problems = store.problems(); // what is not on disk, and the fix: unhealthy
 *     await store.close();                 // a last snapshot
 *
 * Replaying: `load()` passes the snapshot's lines, then every journal record appended after
 * that snapshot was serialised, in order; never one the snapshot already holds. A record
 * should set one key to a value (a holding present or absent), so that a line torn by a
 * crash (passed like any other; the decoder rejects it) loses only itself.
 *
 * - An outbox (what waits to be sent): append `+ id payload` when accepted and `- id` once
 *   sent; serialise() writes what is still unsent; load() gives back exactly that.
 * - A new field in a record (a ban's end): put it last, and decode lines without it as files
 *   of earlier versions have them; existing installs then upgrade in place.
 *
 * Durability: `append()` writes with write(2) before it returns (so a kill -9 of the agent
 * loses nothing) and fsyncs within `syncIntervalMs` (what a power cut may lose). Every write
 * checks that all of it was written. What cannot be written (a full disk, ENOSPC or a short
 * write; an I/O error) is kept in memory, in order, retried with a backoff, logged, and
 * reported by `problems()` (so the agent's status is unhealthy) until it is on disk: the
 * changes are never lost silently. `writeAhead()` is for what must be on disk before the
 * caller acts (the bridge's claims, before the firewall is called): it rolls its own bytes
 * back and throws when they could not be written and synced.
 *
 * Compaction: `serialise()` runs in the same synchronous step as the journal is moved aside
 * (`<journal>.compacting`; appends go on in a new journal), the snapshot is written without
 * blocking (a temp file, fsynced, renamed over the old one, the directory synced), and the
 * moved journal is removed once it is. A large state's `serialise()` returns its lines as an
 * iterable instead: they are taken in slices of SERIALISE_SLICE_MS, with a turn of the event
 * loop between two, while appends go on into the journal; after the last slice the records
 * appended meanwhile follow the lines in the snapshot, and the journal is moved aside in that
 * same step. Each slice reads the state as it is then, so the snapshot's lines alone may mix
 * states; the records after them set each key they touched as it ended, which the replay
 * makes whole, provided that each record sets a key to a value (see Replaying) and that what
 * the lines need at the start is taken at the first slice (the holdings store's releases and
 * snapshots under way).
 *
 * Generations: each snapshot starts with a header line `{"generation":N}`, and each journal
 * segment (the records appended after a compaction) with one naming the generation it
 * follows. A crash (or a failure) after the snapshot is renamed and before the moved journal
 * is removed leaves records the snapshot already holds; `load()` passes only the segments that
 * follow the snapshot's generation and drops the others. Files without headers were written
 * before generations: generation 0 (or `legacyGeneration` of the snapshot's first line).
 */
export interface SnapshotJournalOptions {
  snapshot: string;
  journal: string;
  /** "the holdings store": names it in log lines and problems. */
  what: string;
  /**
   * The whole state as lines, each ending in "\n": one string (taken at once), or lines taken
   * in slices (see Compaction), for a store whose records are lines of its snapshot too (the
   * records appended meanwhile follow the lines in the snapshot, and load() passes them to `snapshot`).
   */
  serialise: () => string | Iterable<string>;
  log: Logger;
  /** Most bytes a file may have: a larger one is refused at load (StateFileError), and the journal never grows past it. */
  maxBytes: number;
  /** How many changes a record stands for, as `unsaved` and problems() count them (default 1; a snapshot part's record holds many). */
  weight?: (record: string) => number;
  /** Longest line the store writes (default 64 KiB): a longer one is read cut to this length, for the decoder to refuse. */
  maxLineBytes?: number;
  /** The journal is fsynced at most this long after an append (writeAhead() syncs at once). */
  syncIntervalMs?: number;
  /** compactSoon() waits this long, so that a burst of changes makes one snapshot. */
  compactDelayMs?: number;
  /** Reads, never writes (a dry run): appends and snapshots are dropped. */
  readOnly?: boolean;
  /** The generation of a snapshot written before headers, from its first line (the bridge's kept it in its JSON). */
  legacyGeneration?: (firstLine: string) => number;
  /** What a snapshot moved aside (it did not decode) means for the admin, and what to do: logged with it. */
  ifSnapshotLost?: string;
}

/** What load() passes each line to. A `snapshot` or `snapshotEnd` that throws says the snapshot does not decode: it is moved aside. */
export interface Readers {
  snapshot: (line: string) => void;
  /** After the snapshot's last line. */
  snapshotEnd?: () => void;
  /** Each journal record that follows the snapshot, in order. */
  record: (line: string) => void;
}

export interface LoadResult {
  /** None of the files existed: the first start with this store. */
  fresh: boolean;
  /** Records of the journal that the snapshot already held (see Generations): not replayed. */
  stale: number;
  /** The journal's last line was cut short by a crash (passed to `record` like any other line). */
  torn: boolean;
}

const DEFAULT_SYNC_INTERVAL_MS = 1_000;
const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
const DEFAULT_COMPACT_DELAY_MS = 1_000;
/**
 * Serialising a snapshot blocks the event loop for as long as it takes (about a second for a
 * million records), so snapshots are also spaced by this many times that: at most about
 * 1/20 of the agent's time goes to them, however big the state grows.
 */
const SNAPSHOT_SPACING_FACTOR = 20;
/** The longest the lines of a snapshot are taken at a stretch before the event loop takes its turn. */
const SERIALISE_SLICE_MS = 10;
/** Retries of what could not be written start after this long, and back off to RETRY_MAX_MS. */
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;
/**
 * What could not be written is kept in memory up to this many bytes; past it, it is dropped
 * and only a new snapshot (which holds the whole state) can make the files whole again.
 */
const MAX_UNWRITTEN_BYTES = 32 * 2 ** 20;

const HEADER = /^\{"generation":(\d{1,15})\}$/;

function header(generation: number): string {
  return `{"generation":${generation}}\n`;
}

export class SnapshotJournal {
  /** Snapshots written. */
  snapshots = 0;
  /** Records in the journal file now (stale ones included): the user's cue to compact. */
  journalRecords = 0;
  private readonly compactingPath: string;
  private readonly dir: string;
  private fd: number | undefined;
  /** Bytes of the journal file, as far as this process wrote them. */
  private journalBytes = 0;
  /** The last byte written to the journal is not "\n" (part of a line). */
  private midLine = false;
  /** The next records must start with a "\n": the journal ends in part of a line no write will complete. */
  private needsNewline = false;
  /** The generation of the newest snapshot serialised (written or being written), or loaded. */
  private generation = 0;
  /** The next append starts a segment following `generation`. */
  private needsHeader = true;
  /** Changed since the last snapshot was serialised. */
  private dirty = false;
  /** Accepted, not yet written to the journal: retried in order. */
  private unwritten: Array<{ bytes: Buffer; weight: number }> = [];
  private unwrittenBytes = 0;
  /** Changes (see `weight`) in `unwritten`. */
  private unwrittenWeight = 0;
  /** The journal lacks changes since then (given up on past MAX_UNWRITTEN_BYTES, or a failed fsync): a snapshot heals it. */
  private missingSince: Date | undefined;
  private missingWeight = 0;
  /** The generation whose snapshot makes the files whole again. */
  private healedBy = Infinity;
  private writeError: string | undefined;
  private snapshotError: string | undefined;
  private retryMs = RETRY_MIN_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private compactTimer: NodeJS.Timeout | undefined;
  private compacting: Promise<void> | undefined;
  /** fsyncs under way, per file descriptor: an fd is closed only after its syncs end. */
  private readonly syncing = new Map<number, Promise<void>>();
  private lastSerialiseMs = 0;
  /** While a snapshot's lines are taken in slices: the records appended meanwhile, which follow them in it. */
  private appendedMeanwhile: string[] | undefined;
  private closed = false;
  private readonly throttle = new LogThrottle();

  constructor(private readonly options: SnapshotJournalOptions) {
    this.compactingPath = `${options.journal}.compacting`;
    this.dir = dirname(options.journal);
  }

  private get maxLineBytes(): number {
    return this.options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  }

  get readOnly(): boolean {
    return this.options.readOnly === true;
  }

  /**
   * Reads the snapshot, then the journal records that follow it, into the callbacks, and
   * opens the journal for appends (creating state_dir if need be). Throws a StateFileError
   * when a file is not one syncfail2ban wrote (a link, a directory, too big), and the
   * system's error when state_dir cannot be created or written.
   */
  load(read: Readers): LoadResult {
    const { options } = this;
    if (!this.readOnly) mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    const fresh = ![options.snapshot, this.compactingPath, options.journal].some((path) => existsNoFollow(path));
    const snapshotGeneration = this.readSnapshot(read);
    let newest = snapshotGeneration;
    let stale = 0;
    let follows = 0;
    let torn = false;
    for (const path of [this.compactingPath, options.journal]) {
      const journal = openForReading(path, options.maxBytes);
      if (!journal) continue;
      follows = 0; // a file without a header predates generations
      let records = 0;
      const { bytes, endsWithNewline } = readLines(journal.fd, (line) => {
        const match = HEADER.exec(line);
        if (match) {
          follows = Number(match[1]);
          newest = Math.max(newest, follows);
        } else if (line !== '') {
          records += 1;
          if (follows < snapshotGeneration) {
            stale += 1;
            return;
          }
          // The state differs from the snapshot: the next compact() (at close, at the latest) writes one.
          this.dirty = true;
          read.record(line);
        }
      }, this.maxLineBytes);
      if (path === options.journal) {
        this.journalBytes = bytes;
        this.journalRecords = records;
        torn = !endsWithNewline;
      }
    }
    this.generation = newest;
    // Appends go on in the journal's last segment only if it follows the snapshot.
    this.needsHeader = this.journalBytes === 0 || follows < snapshotGeneration;
    if (!this.readOnly) {
      this.fd = openForAppend(options.journal);
      this.midLine = torn;
      this.needsNewline = torn;
      // The journal's entry in state_dir (it may have just been created) survives a power cut.
      syncDir(this.dir).catch((error: Error) => this.writeFailed(new Error(`cannot sync ${this.dir}: ${error.message}`)));
    }
    if (stale > 0) {
      options.log.info(
        { stateFile: options.journal, stale, generation: snapshotGeneration },
        `ignored ${stale} journal record(s) of ${options.what} written before its snapshot of generation ${snapshotGeneration} (already in it: the journal was not removed after that snapshot was saved)`,
      );
      this.markDirty();
    }
    return { fresh, stale, torn };
  }

  /** Reads the snapshot into `read`; one that does not decode is moved aside. Returns its generation. */
  private readSnapshot(read: Readers): number {
    const { options } = this;
    const snapshot = openForReading(options.snapshot, options.maxBytes);
    if (!snapshot) return 0;
    let generation = 0;
    let first = true;
    try {
      readLines(snapshot.fd, (line) => {
        if (first) {
          first = false;
          const match = HEADER.exec(line);
          if (match) {
            generation = Number(match[1]);
            return;
          }
          generation = options.legacyGeneration?.(line) ?? 0;
        }
        read.snapshot(line);
      }, this.maxLineBytes);
      read.snapshotEnd?.();
    } catch (error) {
      this.setAside(error as Error);
      return 0;
    }
    return generation;
  }

  /** A snapshot that does not decode is kept for a look, out of the way; the store starts without it. */
  private setAside(problem: Error): void {
    const { options } = this;
    const aside = `${options.snapshot}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    try {
      if (this.readOnly) throw new Error('a dry run writes nothing');
      renameSync(options.snapshot, aside);
    } catch (error) {
      throw new StateFileError(
        `${options.snapshot} is not a valid snapshot of ${options.what} (${problem.message}), and cannot be moved aside (${(error as Error).message})`,
        `move it out of state_dir (mv ${options.snapshot} /root/), then start again`,
      );
    }
    options.log.error(
      { stateFile: options.snapshot, movedTo: aside },
      `${options.snapshot} is not a valid snapshot of ${options.what} (${problem.message}); moved it to ${aside} and started without it. ${options.ifSnapshotLost ?? ''}`.trim(),
    );
  }

  /**
   * Appends records (one line each) to the journal; they survive a kill -9 once this returns,
   * or, when the disk refuses them, they are kept and retried (see problems()).
   */
  append(records: readonly string[]): void {
    if (records.length === 0 || this.fd === undefined) return;
    this.dirty = true;
    this.journalRecords += records.length;
    if (this.appendedMeanwhile) for (const record of records) this.appendedMeanwhile.push(record);
    const lines = this.accept(records);
    if (this.unwritten.length > 0) {
      this.keep(lines, 0); // after what waits, in order: the retry writes them
    } else {
      try {
        this.writeOut(this.fd, Buffer.from(lines.text.join('')));
      } catch (error) {
        this.keep(lines, (error as ShortWriteError).written);
        this.writeFailed(error as Error);
      }
    }
    this.scheduleSync();
  }

  /**
   * Appends records and fsyncs the journal; resolves once they are on disk. Throws (after
   * logging) when they could not be written, with none of their bytes left in the journal,
   * so the caller does not act on them. In a read-only store it does nothing.
   */
  async writeAhead(records: readonly string[]): Promise<void> {
    if (records.length === 0 || this.fd === undefined) return;
    if (this.unwritten.length > 0) throw this.failed(new Error(`${this.unwrittenWeight} earlier change(s) are still waiting to be written`));
    try {
      this.checkJournal();
    } catch (error) {
      throw this.failed(error as Error);
    }
    const fd = this.fd;
    const before = { bytes: this.journalBytes, midLine: this.midLine, needsHeader: this.needsHeader, needsNewline: this.needsNewline };
    const text = Buffer.from(this.accept(records).text.join(''));
    try {
      this.writeOut(fd, text);
    } catch (error) {
      this.rollBack(fd, before);
      throw this.failed(error as Error);
    }
    this.dirty = true;
    this.journalRecords += records.length;
    if (this.appendedMeanwhile) for (const record of records) this.appendedMeanwhile.push(record);
    await this.sync(fd).catch((error: Error) => {
      throw this.failed(error);
    });
  }

  /** The state changed in a way the journal does not record: a snapshot is written soon. */
  markDirty(): void {
    this.compactSoon();
  }

  /** Writes a snapshot after compactDelayMs (or longer, see SNAPSHOT_SPACING_FACTOR), unless one is due already. */
  compactSoon(): void {
    this.dirty = true;
    if (this.compactTimer || this.fd === undefined || this.closed) return;
    const delay = Math.max(this.options.compactDelayMs ?? DEFAULT_COMPACT_DELAY_MS, SNAPSHOT_SPACING_FACTOR * this.lastSerialiseMs);
    this.compactTimer = setTimeout(() => {
      this.compactTimer = undefined;
      this.compact().catch(() => undefined); // logged, and kept in problems()
    }, delay);
    this.compactTimer.unref();
  }

  /**
   * Writes a snapshot now if anything changed; resolves once it is on disk. Throws (after
   * logging; it is retried) when it could not be written.
   */
  async compact(): Promise<void> {
    while (this.compacting) await this.compacting.catch(() => undefined);
    if (!this.dirty || this.fd === undefined) return;
    clearTimeout(this.compactTimer);
    this.compactTimer = undefined;
    const run = this.writeSnapshot();
    this.compacting = run;
    try {
      await run;
    } finally {
      this.compacting = undefined;
    }
  }

  /** Writes what is left (a last snapshot) and closes the journal. Never throws: a failure is logged. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.compactTimer);
    clearTimeout(this.syncTimer);
    clearTimeout(this.retryTimer);
    await this.compact().catch(() => undefined);
    if (this.fd === undefined) return;
    this.flushUnwritten();
    if (this.unwrittenBytes > 0 || this.missingSince) {
      this.options.log.error(
        { stateFile: this.options.journal, lost: this.unsaved },
        `${this.options.what}: ${this.unsaved} change(s) could not be written to ${this.dir} before stopping, and are lost: the next start does not know them. Free space on that filesystem (df -h ${this.dir}), then send the current bans again with "syncfail2ban-client -f <jail>" on each host`,
      );
    }
    const fd = this.fd;
    this.fd = undefined;
    await this.sync(fd).catch(() => undefined);
    closeSync(fd);
  }

  /** Changes accepted that are not on disk (kept in memory, or missing from the journal until the next snapshot). */
  get unsaved(): number {
    return this.unwrittenWeight + this.missingWeight;
  }

  /** What is not on disk as it should be, with the fix; empty while everything is. */
  problems(): Problem[] {
    const fix = `free space on the filesystem of ${this.dir} (df -h ${this.dir}) or fix its permissions (root's, writable): the agent writes what it kept as soon as it can, no restart needed (a restart now would lose it)`;
    const problems: Problem[] = [];
    if (this.writeError !== undefined || this.unwrittenBytes > 0 || this.missingSince) {
      const since = this.missingSince ? `, since ${this.missingSince.toISOString()}` : '';
      problems.push({
        what: `${this.options.what} cannot be written to ${this.options.journal}${this.writeError === undefined ? '' : ` (${this.writeError})`}: ${this.unsaved} change(s) are kept in memory only${since}`,
        fix,
      });
    }
    if (this.snapshotError !== undefined) {
      problems.push({ what: `${this.options.what}: cannot write its snapshot ${this.options.snapshot} (${this.snapshotError}); the journal grows until it can`, fix });
    }
    return problems;
  }

  /**
   * The records as journal lines (each ending in "\n"): after a "\n" when the journal ends in
   * a torn line, after a header when they start a segment. `first`: the index of the first record.
   */
  private accept(records: readonly string[]): { text: string[]; first: number } {
    const text = records.map((record) => `${record}\n`);
    if (this.needsHeader) text.unshift(header(this.generation));
    if (this.needsNewline) text.unshift('\n');
    this.needsHeader = false;
    this.needsNewline = false;
    return { text, first: text.length - records.length };
  }

  /** Writes at the journal's end; throws a ShortWriteError saying how much of it is there. */
  private writeOut(fd: number, buffer: Buffer): void {
    if (this.journalBytes + buffer.length > this.options.maxBytes) {
      throw new ShortWriteError(0, new Error(`the journal would grow past ${this.options.maxBytes} bytes, the most a start reads back, because its snapshots fail`));
    }
    try {
      writeAll(fd, buffer);
    } catch (error) {
      const { written } = error as ShortWriteError;
      this.journalBytes += written;
      if (written > 0) this.midLine = buffer[written - 1] !== NEWLINE;
      throw error;
    }
    this.journalBytes += buffer.length;
    this.midLine = false;
  }

  /** Keeps what the disk did not take of `lines` (from byte `written` on), in order, each line with the changes it stands for. */
  private keep(lines: { text: string[]; first: number }, written: number): void {
    let offset = 0;
    lines.text.forEach((line, index) => {
      const bytes = Buffer.from(line);
      const end = offset + bytes.length;
      if (end > written) {
        const weight = index < lines.first ? 0 : (this.options.weight?.(line.slice(0, -1)) ?? 1);
        const rest = bytes.subarray(Math.max(0, written - offset));
        this.unwritten.push({ bytes: rest, weight });
        this.unwrittenBytes += rest.length;
        this.unwrittenWeight += weight;
      }
      offset = end;
    });
    if (this.unwrittenBytes > MAX_UNWRITTEN_BYTES) {
      // Only a snapshot (the whole state) can hold this much: the journal lacks these changes until one is written.
      this.dropUnwritten();
      this.healedBy = Infinity;
      this.compactSoon();
    }
    this.scheduleRetry();
  }

  /** What was kept is given up on: counted as missing until a snapshot holds it. */
  private dropUnwritten(): void {
    if (this.unwritten.length === 0) return;
    this.missingWeight += this.unwrittenWeight;
    this.missingSince ??= new Date();
    this.unwritten = [];
    this.unwrittenBytes = 0;
    this.unwrittenWeight = 0;
    // Part of a line may be in the file: the next record starts on a line of its own.
    this.needsNewline = this.midLine;
  }

  /** Writes what was kept, in order, as far as the disk takes it. */
  private flushUnwritten(): void {
    if (this.fd === undefined) return;
    try {
      this.checkJournal();
    } catch (error) {
      this.writeFailed(error as Error);
      return;
    }
    while (this.unwritten.length > 0) {
      const entry = this.unwritten[0]!;
      try {
        this.writeOut(this.fd, entry.bytes);
      } catch (error) {
        const { written } = error as ShortWriteError;
        entry.bytes = entry.bytes.subarray(written);
        this.unwrittenBytes -= written;
        this.writeFailed(error as Error);
        return;
      }
      this.unwritten.shift();
      this.unwrittenBytes -= entry.bytes.length;
      this.unwrittenWeight -= entry.weight;
    }
    if (this.writeError !== undefined && !this.missingSince) {
      this.options.log.info({ stateFile: this.options.journal }, `${this.options.what}: every change kept in memory is written to ${this.options.journal} now`);
      this.writeError = undefined;
    }
    this.retryMs = RETRY_MIN_MS;
    this.scheduleSync();
  }

  private writeFailed(error: Error): void {
    this.writeError = error.message;
    if (this.throttle.pass(`write ${error.message}`) !== null) {
      this.options.log.error(
        { stateFile: this.options.journal, unwrittenBytes: this.unwrittenBytes },
        `${this.options.what}: cannot write to ${this.options.journal} (${error.message}): the changes are kept in memory and retried, a restart before then loses them; free space on the filesystem of ${this.dir} (df -h ${this.dir}) or fix its permissions`,
      );
    }
    this.scheduleRetry();
  }

  /** Takes the bytes of a failed writeAhead() back out of the journal. */
  private rollBack(fd: number, before: { bytes: number; midLine: boolean; needsHeader: boolean; needsNewline: boolean }): void {
    if (this.journalBytes !== before.bytes) {
      try {
        ftruncateSync(fd, before.bytes);
      } catch {
        // Left in place: whole lines are replayed as written, a torn one is skipped; the next records start a line and a segment of their own.
        this.needsNewline = this.midLine;
        this.needsHeader = true;
        return;
      }
    }
    this.journalBytes = before.bytes;
    this.midLine = before.midLine;
    this.needsHeader = before.needsHeader;
    this.needsNewline = before.needsNewline;
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.flushUnwritten();
      if (this.missingSince || this.snapshotError !== undefined) this.compact().catch(() => undefined);
      if (this.unwrittenBytes > 0 || this.missingSince || this.snapshotError !== undefined) {
        this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
        this.scheduleRetry();
      }
    }, this.retryMs);
    this.retryTimer.unref();
  }

  private scheduleSync(): void {
    if (this.syncTimer || this.closed) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      if (this.fd === undefined) return;
      this.sync(this.fd).catch(() => undefined);
      try {
        this.checkJournal();
      } catch (error) {
        this.writeFailed(error as Error);
      }
    }, this.options.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS);
    this.syncTimer.unref();
  }

  /**
   * fdatasync; a failure means the kernel may have dropped written pages, so the journal
   * cannot be trusted until the next snapshot: reported as missing records, and one is written soon.
   */
  private sync(fd: number): Promise<void> {
    const done = new Promise<void>((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())));
    const tracked = done.catch(() => undefined).finally(() => {
      if (this.syncing.get(fd) === tracked) this.syncing.delete(fd);
    });
    this.syncing.set(fd, tracked);
    return done.catch((error: Error) => {
      this.missingSince ??= new Date();
      this.healedBy = Infinity;
      this.writeFailed(new Error(`fsync failed: ${error.message}`));
      this.compactSoon();
      throw error;
    });
  }

  /**
   * Makes sure the journal at its path is the file being written: if someone removed or
   * replaced it while the agent runs, what was written since is in a file no start reads.
   * Then a new journal is opened and a snapshot written soon, which holds all of it. Throws
   * when the journal cannot be opened (what is written goes on into the old file meanwhile).
   */
  private checkJournal(): void {
    const { journal } = this.options;
    let same = false;
    try {
      const onDisk = lstatSync(journal);
      const mine = fstatSync(this.fd!);
      same = onDisk.ino === mine.ino && onDisk.dev === mine.dev;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (same) return;
    if (!this.missingSince) {
      this.options.log.warn({ stateFile: journal }, `${this.options.what}: ${journal} was removed or replaced while the agent runs; writing a new one, and a snapshot that holds what the old one did`);
    }
    this.missingSince ??= new Date();
    this.healedBy = Infinity;
    this.compactSoon();
    const fd = openForAppend(journal);
    const size = fstatSync(fd).size;
    this.retire(this.fd!);
    this.fd = fd;
    this.journalBytes = size;
    this.journalRecords = 0;
    this.midLine = false;
    this.needsNewline = size > 0;
    this.needsHeader = true;
  }

  /** Closes a journal file once the syncs under way on it end. */
  private retire(fd: number): void {
    const pending = this.syncing.get(fd);
    if (pending) pending.finally(() => closeSync(fd)).catch(() => undefined);
    else closeSync(fd);
  }

  private async writeSnapshot(): Promise<void> {
    const { options } = this;
    const generation = this.generation + 1;
    let text: string;
    try {
      this.appendedMeanwhile = [];
      const started = performance.now();
      const produced = this.options.serialise();
      this.lastSerialiseMs = performance.now() - started;
      // A large state's lines are taken in slices; either way, may throw (a state too big for one string).
      const lines = typeof produced === 'string' ? produced : await this.inSlices(produced);
      // From here to the journal's rotation, one step: what was appended while the lines were taken follows them.
      text = header(generation) + lines + (this.appendedMeanwhile ?? []).map((record) => `${record}\n`).join('');
    } catch (error) {
      this.snapshotFailed(error as Error);
      throw error;
    } finally {
      this.appendedMeanwhile = undefined;
    }
    // From here on, the snapshot being written holds every change accepted so far.
    this.dirty = false;
    this.generation = generation;
    this.needsHeader = true;
    if (this.unwritten.length > 0 || this.missingSince) {
      // The snapshot holds what could not be written; until it is on disk, the files lack it.
      this.dropUnwritten();
      this.healedBy = generation;
    }
    this.rotateJournal();
    try {
      await replaceFile(options.snapshot, text, this.dir);
      unlinkIfThere(this.compactingPath);
    } catch (error) {
      this.dirty = true;
      this.snapshotFailed(error as Error);
      throw error;
    }
    this.snapshots += 1;
    if (this.snapshotError !== undefined) options.log.info({ stateFile: options.snapshot }, `${options.what}: snapshot written again`);
    this.snapshotError = undefined;
    if (this.healedBy <= generation) {
      options.log.info({ stateFile: options.snapshot }, `${options.what}: every change is on disk again (in the snapshot)`);
      this.missingSince = undefined;
      this.missingWeight = 0;
      this.healedBy = Infinity;
      this.writeError = undefined;
    }
  }

  /** The lines, taken SERIALISE_SLICE_MS at a time with a turn of the event loop between (`appendedMeanwhile` keeps what is appended meanwhile). */
  private async inSlices(produced: Iterable<string>): Promise<string> {
    const lines = produced[Symbol.iterator]();
    const slices: string[] = [];
    for (;;) {
      const started = performance.now();
      const until = started + SERIALISE_SLICE_MS;
      const slice: string[] = [];
      let next = lines.next();
      for (let taken = 1; !next.done; taken++) {
        slice.push(next.value);
        if (taken % 256 === 0 && performance.now() >= until) break;
        next = lines.next();
      }
      slices.push(slice.join(''));
      this.lastSerialiseMs += performance.now() - started;
      if (next.done) return slices.join('');
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Moves the journal aside (the snapshot being written holds it) unless an earlier moved one is still there. */
  private rotateJournal(): void {
    if (this.journalBytes === 0 || existsNoFollow(this.compactingPath)) return;
    const old = this.fd!;
    try {
      renameSync(this.options.journal, this.compactingPath);
    } catch {
      return; // segments stay in one file: the next snapshot tries again
    }
    try {
      this.fd = openForAppend(this.options.journal);
    } catch {
      // The records go on into the moved file (its old fd), as a segment of the new generation.
      try {
        renameSync(this.compactingPath, this.options.journal);
      } catch {
        // Then the next start reads it as the moved journal, segments and all: nothing is lost.
      }
      return;
    }
    this.journalBytes = 0;
    this.journalRecords = 0;
    this.midLine = false;
    this.needsNewline = false;
    // Synced like any journal, then closed.
    this.sync(old).catch(() => undefined);
    this.retire(old);
  }

  private snapshotFailed(error: Error): void {
    this.snapshotError = error.message;
    if (this.throttle.pass(`snapshot ${error.message}`) !== null) {
      this.options.log.error(
        { stateFile: this.options.snapshot },
        `${this.options.what}: cannot write its snapshot ${this.options.snapshot} (${error.message}); retried, the journal keeps every change meanwhile: free space on the filesystem of ${this.dir} (df -h ${this.dir}) or fix its permissions`,
      );
    }
    this.scheduleRetry();
  }

  private failed(error: Error): Error {
    const message = `${this.options.what}: cannot write ${this.options.journal} (${error.message}); check free space and permissions of ${this.dir}`;
    if (this.throttle.pass(`ahead ${error.message}`) !== null) this.options.log.error({ stateFile: this.options.journal }, message);
    return new Error(message, { cause: error });
  }
}

function unlinkIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
