/** The one journal+snapshot engine of state_dir, in-process: order, generations, crashes, failures, dry runs. */
import { expect } from 'chai';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SnapshotJournal, type SnapshotJournalOptions } from '../../../agent/state-dir/snapshot-journal.js';
import { captureLog } from '../../support/capture-log.js';
import { waitFor } from '../../support/wait.js';

describe('state_dir: SnapshotJournal', () => {
  let dir: string;
  let open: SnapshotJournal[];

  /** A store of a list of strings: the snapshot is the list, records are "+x" / "-x". */
  function store(state: Set<string>, options: Partial<SnapshotJournalOptions> = {}) {
    const captured = captureLog();
    const journal = new SnapshotJournal({
      snapshot: join(dir, 'things.snapshot'),
      journal: join(dir, 'things.journal'),
      what: 'the things store',
      serialise: () => [...state].map((thing) => `${thing}\n`).join(''),
      log: captured.log,
      maxBytes: 2 ** 20,
      compactDelayMs: 60_000,
      ...options,
    });
    open.push(journal);
    return { journal, ...captured };
  }

  /** Loads into a new set: the snapshot's lines, then the records replayed. */
  function load(options: Partial<SnapshotJournalOptions> = {}) {
    const state = new Set<string>();
    const records: string[] = [];
    const opened = store(state, options);
    const result = opened.journal.load({
      snapshot: (line) => state.add(line),
      record: (line) => {
        records.push(line);
        if (line.startsWith('+')) state.add(line.slice(1));
        else if (line.startsWith('-')) state.delete(line.slice(1));
      },
    });
    return { ...opened, state, records, result };
  }

  function change(state: Set<string>, journal: SnapshotJournal, record: string) {
    if (record.startsWith('+')) state.add(record.slice(1));
    else state.delete(record.slice(1));
    journal.append([record]);
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-journal-'));
    open = [];
  });
  afterEach(async () => {
    for (const journal of open) await journal.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('replays a snapshot and the journal after it in order; a record is in the file when append() returns (a kill -9 loses nothing)', async () => {
    const first = load();
    expect(first.result).to.deep.equal({ fresh: true, stale: 0, torn: false });
    for (const record of ['+a', '+b', '-a', '+c']) change(first.state, first.journal, record);
    expect(await readFile(join(dir, 'things.journal'), 'utf8')).to.equal('{"generation":0}\n+a\n+b\n-a\n+c\n');
    open = []; // no close(): the process died
    const second = load();
    expect([...second.state]).to.deep.equal(['b', 'c']);
    expect(second.result.fresh).to.equal(false);
    await second.journal.close();
    expect(await readFile(join(dir, 'things.snapshot'), 'utf8')).to.equal('{"generation":1}\nb\nc\n');
    expect(await readFile(join(dir, 'things.journal'), 'utf8'), 'the journal is folded into the snapshot').to.equal('');
    expect((await readdir(dir)).sort()).to.deep.equal(['things.journal', 'things.snapshot']);
    open = [];
    const third = load();
    change(third.state, third.journal, '+d');
    expect(await readFile(join(dir, 'things.journal'), 'utf8'), 'a segment following snapshot 1').to.equal('{"generation":1}\n+d\n');
    open = [];
    expect([...load().state]).to.deep.equal(['b', 'c', 'd']);
  });

  it('passes a torn last line like any other, and starts the next record on a line of its own', async () => {
    await writeFile(join(dir, 'things.journal'), '+a\n+b');
    const first = load();
    expect(first.records).to.deep.equal(['+a', '+b']);
    expect(first.result.torn).to.equal(true);
    first.journal.append(['+c']);
    open = [];
    expect(load().records).to.deep.equal(['+a', '+b', '+c']);
  });

  it('moves the journal aside while a snapshot is written: appends go on, and a crash at any step replays each change once', async () => {
    const first = load();
    for (const record of ['+a', '+b']) change(first.state, first.journal, record);
    const compaction = first.journal.compact();
    // Right after serialising, in the same step: the journal is moved aside, a new one takes what follows.
    expect((await readdir(dir)).sort()).to.include('things.journal.compacting');
    change(first.state, first.journal, '-a');
    await compaction;
    expect(await readFile(join(dir, 'things.snapshot'), 'utf8')).to.equal('{"generation":1}\na\nb\n');
    expect(await readFile(join(dir, 'things.journal'), 'utf8')).to.equal('{"generation":1}\n-a\n');
    expect(await readdir(dir)).to.not.include('things.journal.compacting');

    // A crash after the snapshot was renamed, before the moved journal was removed: its records are already in the snapshot.
    await writeFile(join(dir, 'things.journal.compacting'), '{"generation":0}\n+a\n+b\n');
    open = [];
    const crashed = load();
    expect([...crashed.state]).to.deep.equal(['b']);
    expect(crashed.result.stale).to.equal(2);
    expect(crashed.records, 'the stale records are not replayed').to.deep.equal(['-a']);
    await waitFor(() => crashed.lines.some((line) => /ignored 2 journal record\(s\) of the things store written before its snapshot of generation 1/.test(String(line.msg))), 'the log line');

    // A crash before the snapshot was renamed: the old snapshot, the moved journal and the new one, all replayed.
    await crashed.journal.close();
    open = [];
    await writeFile(join(dir, 'things.snapshot'), '{"generation":4}\nx\n');
    await writeFile(join(dir, 'things.journal.compacting'), '{"generation":4}\n+y\n');
    await writeFile(join(dir, 'things.journal'), '{"generation":5}\n-x\n');
    const midway = load();
    expect([...midway.state]).to.deep.equal(['y']);
    midway.journal.append(['+z']);
    await midway.journal.compact();
    expect(await readFile(join(dir, 'things.snapshot'), 'utf8'), 'a generation above every one seen').to.equal('{"generation":6}\ny\n');
  });

  it('reads files written before generations (no headers) as generation 0, and a legacy generation where the user knows it', async () => {
    await writeFile(join(dir, 'things.snapshot'), 'a\nb\n');
    await writeFile(join(dir, 'things.journal.compacting'), '-a\n');
    await writeFile(join(dir, 'things.journal'), '+c\n');
    expect([...load().state]).to.deep.equal(['b', 'c']);
    open = [];
    // The bridge kept its generation in its JSON: records of older segments are stale.
    await writeFile(join(dir, 'things.snapshot'), 'g3 a\n');
    await rm(join(dir, 'things.journal.compacting'));
    await writeFile(join(dir, 'things.journal'), '{"generation":2}\n+old\n{"generation":3}\n+new\n');
    const legacy = load({ legacyGeneration: (line) => Number(/^g(\d+)/.exec(line)?.[1] ?? 0) });
    expect(legacy.records).to.deep.equal(['+new']);
    expect(legacy.result.stale).to.equal(1);
  });

  it('debounces compactSoon() into one snapshot and spaces them', async () => {
    const state = new Set(['a']);
    const { journal } = store(state, { compactDelayMs: 20 });
    journal.load({ snapshot: () => undefined, record: () => undefined });
    for (let i = 0; i < 1_000; i++) journal.compactSoon();
    await waitFor(() => journal.snapshots === 1, 'the snapshot');
    expect(journal.snapshots).to.equal(1);
    await journal.compact();
    expect(journal.snapshots, 'nothing changed since').to.equal(1);
  });

  it('a snapshot that cannot be written is reported and retried, the journal keeping every change meanwhile; no temp file is left', async () => {
    const first = load();
    change(first.state, first.journal, '+a');
    await mkdir(join(dir, 'things.snapshot.tmp', 'blocker'), { recursive: true }); // cannot be replaced by a file
    let caught: Error | undefined;
    await first.journal.compact().catch((error: Error) => (caught = error));
    expect(caught?.message).to.match(/EISDIR|ENOTEMPTY|EEXIST|directory/i);
    expect(first.journal.problems().map((problem) => problem.what)).to.deep.equal([
      `the things store: cannot write its snapshot ${join(dir, 'things.snapshot')} (${caught!.message}); the journal grows until it can`,
    ]);
    change(first.state, first.journal, '+b');
    await rm(join(dir, 'things.snapshot.tmp'), { recursive: true });
    open = [];
    expect([...load().state], 'a crash now: the moved journal and the new one hold everything').to.deep.equal(['a', 'b']);
    await first.journal.compact();
    expect(first.journal.problems()).to.deep.equal([]);
    expect(await readFile(join(dir, 'things.snapshot'), 'utf8')).to.equal('{"generation":2}\na\nb\n');
    expect((await readdir(dir)).sort()).to.deep.equal(['things.journal', 'things.snapshot']);
  });

  it('logs a state that cannot be serialised instead of an unhandled rejection from its timer, and writes a later one', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let broken = true;
      const { journal, lines } = store(new Set(), {
        compactDelayMs: 1,
        serialise: () => {
          if (broken) throw new RangeError('Invalid string length');
          return '';
        },
      });
      journal.load({ snapshot: () => undefined, record: () => undefined });
      journal.compactSoon();
      const error = await waitFor(() => lines.find((line) => line.level === 50), 'the error in the log');
      expect(error.msg).to.match(/the things store: cannot write its snapshot .* \(Invalid string length\)/);
      broken = false;
      await waitFor(() => journal.snapshots === 1, 'a later snapshot that works', 5_000);
      expect(unhandled).to.deep.equal([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('writeAhead() is on disk when it resolves, and throws with nothing of its records left when they cannot be written', async () => {
    const { journal } = load({ maxBytes: 64 });
    await journal.writeAhead(['["claim",1]']);
    expect(await readFile(join(dir, 'things.journal'), 'utf8')).to.equal('{"generation":0}\n["claim",1]\n');
    let caught: Error | undefined;
    await journal.writeAhead(['x'.repeat(100)]).catch((error: Error) => (caught = error));
    expect(caught?.message).to.match(/the things store: cannot write .*things\.journal \(the journal would grow past 64 bytes/);
    expect(await readFile(join(dir, 'things.journal'), 'utf8'), 'rolled back').to.equal('{"generation":0}\n["claim",1]\n');
    await journal.writeAhead(['["claim",2]']);
    open = [];
    expect(load().records).to.deep.equal(['["claim",1]', '["claim",2]']);
  });

  it('read-only (a dry run): reads what is there, writes nothing, creates nothing', async () => {
    const missing = join(dir, 'not-yet');
    const empty = new SnapshotJournal({ snapshot: join(missing, 's'), journal: join(missing, 'j'), what: 'x', serialise: () => '', log: captureLog().log, maxBytes: 1024, readOnly: true });
    expect(empty.load({ snapshot: () => undefined, record: () => undefined }).fresh).to.equal(true);
    expect(await readdir(dir), 'no state_dir created').to.deep.equal([]);

    await writeFile(join(dir, 'things.snapshot'), '{"generation":1}\na\n');
    await writeFile(join(dir, 'things.journal'), '{"generation":0}\n+stale\n{"generation":1}\n+b\n');
    const before = await Promise.all(['things.snapshot', 'things.journal'].map((name) => readFile(join(dir, name), 'utf8')));
    const dry = load({ readOnly: true });
    expect([...dry.state]).to.deep.equal(['a', 'b']);
    change(dry.state, dry.journal, '+c');
    await dry.journal.writeAhead(['+d']);
    dry.journal.compactSoon();
    await dry.journal.compact();
    await dry.journal.close();
    expect(await Promise.all(['things.snapshot', 'things.journal'].map((name) => readFile(join(dir, name), 'utf8')))).to.deep.equal(before);
    expect((await readdir(dir)).sort()).to.deep.equal(['things.journal', 'things.snapshot']);
  });

  it('moves a snapshot that does not decode aside, with a loud error, and starts from the journal', async () => {
    await writeFile(join(dir, 'things.snapshot'), '{"generation":2}\ngarbage\n');
    await appendFile(join(dir, 'things.journal'), '{"generation":2}\n+a\n');
    const { journal, lines } = store(new Set(), { ifSnapshotLost: 'Send the bans again.' });
    const records: string[] = [];
    journal.load({
      snapshot: (line) => {
        if (line === 'garbage') throw new Error('not a thing');
      },
      record: (line) => records.push(line),
    });
    expect(records).to.deep.equal(['+a']);
    const names = await readdir(dir);
    const aside = names.find((name) => name.startsWith('things.snapshot.corrupt-'));
    expect(aside).to.not.equal(undefined);
    expect(await readFile(join(dir, aside!), 'utf8'), 'kept as it was').to.equal('{"generation":2}\ngarbage\n');
    const error = await waitFor(() => lines.find((line) => line.level === 50), 'the error');
    expect(error.msg).to.match(/things\.snapshot is not a valid snapshot of the things store \(not a thing\); moved it to .*corrupt-.* and started without it\. Send the bans again\./);
  });

  it('takes a large state in slices, changes going on between them: the snapshot and what was appended meanwhile replay to the state as it ended', async () => {
    // Its lines are records too ("+x"), as the holdings store's are: what was appended meanwhile follows them.
    const state = new Set(Array.from({ length: 200_000 }, (_, i) => `t${i}`));
    const lines = function* () {
      for (const thing of state) yield `+${thing}\n`;
    };
    const { journal } = store(state, { serialise: () => lines(), maxBytes: 2 ** 24 });
    journal.load({ snapshot: () => undefined, record: () => undefined });
    journal.append(['+t0']);
    let turns = 0;
    let compacted = false;
    const compaction = journal.compact().then(() => (compacted = true));
    // Between two slices: a change ahead of the lines taken so far, one behind them, one new.
    for (let i = 0; !compacted; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      if (compacted) break;
      turns += 1;
      for (const record of [`-t${199_999 - i}`, `-t${i}`, `+n${i}`]) change(state, journal, record);
    }
    await compaction;
    expect(turns, 'turns of the event loop while the snapshot was taken').to.be.greaterThan(1);
    const replayed = new Set<string>();
    const replay = (line: string) => (line.startsWith('+') ? replayed.add(line.slice(1)) : replayed.delete(line.slice(1)));
    const reopened = store(new Set(), { maxBytes: 2 ** 24 });
    reopened.journal.load({ snapshot: replay, record: replay });
    expect(replayed.size).to.equal(state.size);
    expect([...replayed].sort()).to.deep.equal([...state].sort());
  });
});
