import { join } from 'node:path';
import { ConfigError } from '../../src/config.js';
import { JAIL_NAME, type Action } from '../../src/event.js';
import { isCanonical } from '../../src/ip.js';
import type { Logger } from '../../src/log.js';
import type { Problem } from '../../src/status.js';
import { StateFileError } from '../state-dir/durable-file.js';
import { SnapshotJournal } from '../state-dir/snapshot-journal.js';
import { BANCOUNT, BANTIME, TIME, type ActionEvent } from './action-line.js';

/** One event waiting to be published, in the order fail2ban made it. */
export interface OutboxEntry {
  seq: number;
  action: Action;
  jail: string;
  /** Canonical address text. */
  address: string;
  /** fail2ban's ban: when it began (seconds since the epoch), its length (-1: until unbanned), how often the address was banned. */
  start: number;
  bantime: number;
  bancount: number;
}

/** Events kept at most while they cannot be published; beyond, new ones are dropped and counted. */
export const OUTBOX_LIMIT = 100_000;

export interface OutboxOptions {
  /** Default OUTBOX_LIMIT. */
  limit?: number;
  /** A dry run writes nothing in state_dir: the outbox then lives in memory only. */
  readOnly?: boolean;
}

const SNAPSHOT_FILE = 'outbox.snapshot';
const JOURNAL_FILE = 'outbox.journal';
/** The journal is compacted once it has this many records and more than twice the entries it describes. */
const COMPACT_MIN_RECORDS = 10_000;
/** A full outbox's snapshot is about 10 MB; a journal compacts long before this. */
const MAX_FILE_BYTES = 64 * 2 ** 20;
const SEQ = /^\d{1,15}$/;

/**
 * What this host has to publish, in order: taken from fail2ban's action, removed once the
 * broker acknowledged it. Bounded: when it holds `limit` events, what comes on top is
 * dropped and counted (a snapshot, syncfail2ban-client -f, heals what peers missed).
 *
 * Kept in state_dir by a SnapshotJournal, so that an agent restarted (or killed) while its
 * broker did not answer loses nothing: `outbox.snapshot` holds the entries, `outbox.journal`
 * each change since, one line each:
 *
 *     + <seq> <ban|unban> <jail> <address> <start> <bantime> <bancount>   an event taken in
 *     - <seq>                                                              every event up to seq published
 *     = <seq>                                                              (the snapshot's last) the next seq
 */
export class Outbox {
  private entries: OutboxEntry[] = [];
  /** Index in `entries` of the oldest entry not yet published. */
  private head = 0;
  private nextSeq = 1;
  private droppedFull = 0;
  private readonly store: SnapshotJournal;
  /** A removal not yet in the journal: written at the next turn of the event loop. */
  private removalWrite: NodeJS.Immediate | undefined;
  private lastRemoved = 0;

  constructor(
    readonly dir: string,
    private readonly log: Logger,
    options: OutboxOptions = {},
  ) {
    this.limit = options.limit ?? OUTBOX_LIMIT;
    this.store = new SnapshotJournal({
      snapshot: join(dir, SNAPSHOT_FILE),
      journal: join(dir, JOURNAL_FILE),
      what: 'the outbox',
      serialise: () => this.serialise(),
      log,
      maxBytes: MAX_FILE_BYTES,
      readOnly: options.readOnly === true,
    });
  }

  readonly limit: number;

  get size(): number {
    return this.entries.length - this.head;
  }

  get dropped(): number {
    return this.droppedFull;
  }

  /** What is not on disk as it should be, with the fix. */
  problems(): Problem[] {
    return this.store.problems();
  }

  /** Reads what a previous run left to publish; call before anything is added. Throws a ConfigError when state_dir cannot be used. */
  load(): void {
    let skipped = 0;
    const line = (text: string) => {
      if (!this.replay(text)) skipped += 1;
    };
    try {
      this.store.load({ snapshot: line, record: line });
    } catch (error) {
      if (error instanceof StateFileError) throw new ConfigError(`state_dir: ${error.message}; fix: ${error.fix}`);
      throw new ConfigError(`state_dir: cannot keep the outbox in ${this.dir} (${(error as Error).message}); fix: set state_dir to a directory this user may create and write (default /var/lib/syncfail2ban)`);
    }
    if (skipped > 0) this.log.warn({ skipped, stateDir: this.dir }, `skipped ${skipped} invalid line(s) of the outbox (a line torn by a crash is expected once)`);
    if (this.size > 0) this.log.info({ events: this.size, stateDir: this.dir }, `outbox loaded: ${this.size} event(s) of this host's fail2ban still to publish`);
  }

  /** Writes a last snapshot and closes the files. */
  async close(): Promise<void> {
    if (this.removalWrite) {
      clearImmediate(this.removalWrite);
      this.noteRemoved();
    }
    await this.store.close();
  }

  /** Appends what fits (in the journal first: it survives a kill -9 from then on); returns how many of `events` (from the first) were taken. */
  add(events: readonly ActionEvent[]): number {
    const room = Math.max(0, this.limit - this.size);
    const taken = events.slice(0, room).map(({ action, jail, address, start, bantime, bancount }): OutboxEntry => ({ seq: this.nextSeq++, action, jail, address: address.text, start, bantime, bancount }));
    this.store.append(taken.map(recordLine));
    this.entries.push(...taken);
    this.droppedFull += events.length - taken.length;
    this.compactWhenDue();
    return taken.length;
  }

  /** The `index`-th entry from the oldest not published (0 is the oldest). */
  at(index: number): OutboxEntry | undefined {
    return this.entries[this.head + index];
  }

  /**
   * Removes the oldest `count` entries: the broker acknowledged them. The journal learns it
   * once per turn of the event loop (one record for a window of acknowledgements, not one
   * each): a crash in between only publishes those again, which peers take as the same ban.
   */
  remove(count: number): void {
    const last = this.at(Math.min(count, this.size) - 1);
    if (!last) return;
    this.dropHead(last.seq);
    this.removalWrite ??= setImmediate(() => this.noteRemoved());
    this.lastRemoved = last.seq;
  }

  private noteRemoved(): void {
    this.removalWrite = undefined;
    this.store.append([`- ${this.lastRemoved}`]);
    this.compactWhenDue();
  }

  private dropHead(upTo: number): void {
    while (this.head < this.entries.length && this.entries[this.head]!.seq <= upTo) this.head += 1;
    if (this.head === this.entries.length) {
      this.entries = [];
      this.head = 0;
    } else if (this.head > 1_024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  private compactWhenDue(): void {
    if (this.store.journalRecords > Math.max(COMPACT_MIN_RECORDS, 2 * this.size)) this.store.compactSoon();
  }

  private serialise(): string {
    const lines: string[] = [];
    for (let index = this.head; index < this.entries.length; index++) lines.push(`${recordLine(this.entries[index]!)}\n`);
    lines.push(`= ${this.nextSeq}\n`);
    return lines.join('');
  }

  /** Applies one line read back; false when it is not a valid line (validated as strictly as the action socket's). */
  private replay(line: string): boolean {
    const fields = line.split(' ');
    const [kind, seqText] = fields;
    if (seqText === undefined || !SEQ.test(seqText)) return false;
    const seq = Number(seqText);
    if ((kind === '=' || kind === '-') && fields.length === 2) {
      this.nextSeq = Math.max(this.nextSeq, kind === '=' ? seq : seq + 1);
      if (kind === '-') this.dropHead(seq);
      return true;
    }
    if (kind !== '+' || fields.length !== 8) return false;
    const [, , action, jail, address, start, bantime, bancount] = fields as [string, string, string, string, string, string, string, string];
    if ((action !== 'ban' && action !== 'unban') || !JAIL_NAME.test(jail) || !isCanonical(address) || !TIME.test(start) || !BANTIME.test(bantime) || !BANCOUNT.test(bancount)) return false;
    // Seen already (a record the snapshot holds): once is enough.
    if (seq < this.nextSeq) return true;
    this.entries.push({ seq, action, jail, address, start: Number(start), bantime: Number(bantime), bancount: Number(bancount) });
    this.nextSeq = seq + 1;
    return true;
  }
}

/** An entry as one line of the journal and the snapshot (read back by Outbox.replay). */
function recordLine({ seq, action, jail, address, start, bantime, bancount }: OutboxEntry): string {
  return `+ ${seq} ${action} ${jail} ${address} ${start} ${bantime} ${bancount}`;
}
