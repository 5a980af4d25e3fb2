/**
 * A full disk under state_dir (a real tmpfs filled up, issue 25 finding 5): every write is
 * checked, what the disk refuses is kept in memory, retried and reported, never lost silently.
 */
import { expect } from 'chai';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SnapshotJournal } from '../../agent/state-dir/snapshot-journal.js';
import { captureLog } from '../support/capture-log.js';
import { TinyDisk } from '../support/tiny-disk.js';
import { waitFor } from '../support/wait.js';

describe('state_dir on a full disk: the journal+snapshot engine', function () {
  this.timeout(120_000);
  let disk: TinyDisk;
  let open: SnapshotJournal[];

  function store(state: string[]) {
    const captured = captureLog();
    const journal = new SnapshotJournal({
      snapshot: join(disk.path, 'things.snapshot'),
      journal: join(disk.path, 'things.journal'),
      what: 'the things store',
      serialise: () => state.map((thing) => `${thing}\n`).join(''),
      log: captured.log,
      maxBytes: 2 ** 30,
      compactDelayMs: 600_000,
    });
    open.push(journal);
    return { journal, ...captured };
  }

  /** What a start after a kill -9 reads back: the records, in order. */
  function readBack(): string[] {
    const records: string[] = [];
    const { journal } = store([]);
    journal.load({ snapshot: (line) => records.push(line), record: (line) => records.push(line) });
    return records;
  }

  beforeEach(async () => {
    disk = await TinyDisk.mount(16);
    open = [];
  });
  afterEach(async () => {
    for (const journal of open) await journal.close();
    await disk.unmount();
  });

  it('keeps what a full disk refuses (a short write, then ENOSPC) in memory, says so, writes it in order once there is space', async () => {
    const accepted: string[] = [];
    const { journal, lines } = store(accepted);
    journal.load({ snapshot: () => undefined, record: () => undefined });
    // Lines of 31 bytes: 16 KiB is not a multiple of them, so the write that fills the disk comes out short.
    for (let i = 0; i < 1_000; i++) {
      const record = `+ thing ${String(i).padStart(22, '0')}`;
      journal.append([record]);
      accepted.push(record);
    }
    expect(journal.unsaved, 'some could not be written').to.be.greaterThan(0);
    const [problem] = journal.problems();
    expect(problem?.what).to.match(new RegExp(`^the things store cannot be written to .*things\\.journal \\(ENOSPC.*\\): ${journal.unsaved} change\\(s\\) are kept in memory only$`));
    expect(problem?.fix).to.match(/free space on the filesystem of .* \(df -h .*\) or fix its permissions/);
    await waitFor(() => lines.some((line) => line.level === 50 && /cannot write to .*things\.journal \(ENOSPC/.test(String(line.msg))), 'the error in the log');

    // A kill -9 now: what was written comes back, whole lines in order; what was not is what status said.
    const written = readBack();
    const whole = written.filter((record) => accepted.includes(record));
    expect(whole, 'whole records, in order').to.deep.equal(accepted.slice(0, whole.length));
    expect(written.length - whole.length, 'at most the line the short write cut').to.be.at.most(1);
    expect(whole.length + journal.unsaved, 'everything accepted is on disk or reported').to.be.at.least(accepted.length);

    await disk.resize(1024);
    await waitFor(() => journal.unsaved === 0 && journal.problems().length === 0, 'everything written once there is space', 60_000);
    await waitFor(() => lines.some((line) => line.level === 30 && /every change kept in memory is written/.test(String(line.msg))), 'the recovery in the log');
    expect(readBack(), 'every change, once, in order: the cut line was completed').to.deep.equal(accepted);
  });

  it('a snapshot that does not fit leaves no temp file behind (it would hold the space) and is written once there is space', async () => {
    const state: string[] = [];
    const { journal } = store(state);
    journal.load({ snapshot: () => undefined, record: () => undefined });
    // 12 KB of journal on a 16 KiB disk: a snapshot of it does not fit beside it.
    for (let i = 0; i < 300; i++) {
      state.push(`+ thing ${String(i).padStart(31, '0')}`);
      journal.append([state.at(-1)!]);
    }
    expect(journal.unsaved).to.equal(0);
    await journal.compact().catch(() => undefined); // the journal and a snapshot of it do not both fit in 16 KiB
    expect(await readdir(disk.path)).to.not.include('things.snapshot.tmp');
    expect(journal.problems().map((problem) => problem.what).join('\n')).to.match(/cannot write its snapshot .*things\.snapshot \(ENOSPC/);
    expect(readBack(), 'the journals still hold every change').to.deep.equal(state);
    await disk.resize(1024);
    await waitFor(() => journal.problems().length === 0, 'the snapshot retried and written', 60_000);
    expect(await readFile(join(disk.path, 'things.snapshot'), 'utf8'), 'generation 1 was the attempt that failed').to.equal(`{"generation":2}\n${state.join('\n')}\n`);
    expect(readBack()).to.deep.equal(state);
  });
});
