import { expect } from 'chai';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FirewallLedger } from '../../../agent/sinks/opnsense/ledger.js';
import { decodeBridgeState, encodeBridgeState } from '../../../agent/sinks/opnsense/persisted-state.js';
import { StateFile } from '../../../agent/sinks/opnsense/state-file.js';
import { captureLog } from '../../support/capture-log.js';
import { waitFor } from '../../support/wait.js';

describe('bridge state file', function () {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-state-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips the ledger, and reads the holders of a file written before the holdings store (for adoption), skipping entries that are not canonical', async () => {
    const ledger = new FirewallLedger('https://192.0.2.1');
    ledger.add('bans', '203.0.113.1');
    const json = JSON.parse(encodeBridgeState([ledger])) as Record<string, unknown>;
    expect(json).to.not.have.property('wanted');
    json.wanted = { bans: { '203.0.113.1': ['host-a/sshd'], '2001:db8::1': ['@manual/sshd'], '2001:DB8::2': ['host-a/sshd'] } };
    const decoded = decodeBridgeState(json);
    expect(decoded.wanted).to.deep.equal([
      ['bans', '203.0.113.1', 'host-a/sshd'],
      ['bans', '2001:db8::1', '@manual/sshd'],
    ]);
    expect(decoded.added).to.deep.equal([['https://192.0.2.1', 'bans', '203.0.113.1']]);
    expect(decoded.skipped).to.equal(1);
  });

  it('debounces a burst into one write, writes at once on flush, and replaces the file atomically', async () => {
    const { log } = captureLog();
    let value = 0;
    const file = new StateFile(join(dir, 'state.json'), () => JSON.stringify({ value }), log, 60_000);
    for (value = 1; value <= 12_000; value += 1) file.markDirty();
    expect(file.writes).to.equal(0);
    await file.flush();
    expect(file.writes).to.equal(1);
    expect(JSON.parse(await readFile(join(dir, 'state.json'), 'utf8'))).to.deep.equal({ value: 12_001 });
    await file.flush();
    expect(file.writes, 'nothing changed since').to.equal(1);
    value = 7;
    file.markDirty();
    await file.close();
    expect(JSON.parse(await readFile(join(dir, 'state.json'), 'utf8'))).to.deep.equal({ value: 7 });
    expect(await readdir(dir), 'no temp file left behind').to.deep.equal(['state.json']);
  });

  it('ignores the temp file of a write that crashed half-way', async () => {
    const { log } = captureLog();
    await writeFile(join(dir, 'state.json'), JSON.stringify({ version: 1, wanted: {}, added: {} }));
    await writeFile(join(dir, 'state.json.tmp'), '{"version":1,"wan');
    const file = new StateFile(join(dir, 'state.json'), () => '{}', log);
    expect(await file.load(decodeBridgeState)).to.deep.equal({ wanted: [], added: [], skipped: 0 });
  });

  it('moves a corrupt file aside with a loud error and starts empty', async () => {
    const { log, lines } = captureLog();
    await writeFile(join(dir, 'state.json'), '{"version":1,"wanted":{"bans":');
    const file = new StateFile(join(dir, 'state.json'), () => JSON.stringify({ version: 1, wanted: {}, added: {} }), log);
    expect(await file.load(decodeBridgeState)).to.equal(null);
    const error = lines.find((line) => line.level === 50);
    expect(error?.msg).to.match(/is not a valid state file .*moved it to .*state\.json\.corrupt-.*started with an empty state.*syncfail2ban-client -f/);
    const names = await readdir(dir);
    expect(names.filter((name) => name.startsWith('state.json.corrupt-'))).to.have.length(1);
    file.markDirty();
    await file.close();
    expect(await readFile(join(dir, (names.find((name) => name.includes('corrupt')))!), 'utf8'), 'the bad file is kept as it was').to.equal('{"version":1,"wanted":{"bans":');
  });

  it('runs without saving, and says so, when state_dir cannot be created', async () => {
    const { log, lines } = captureLog();
    await writeFile(join(dir, 'a-file'), '');
    const file = new StateFile(join(dir, 'a-file', 'state', 'state.json'), () => '{}', log);
    expect(await file.load(decodeBridgeState)).to.equal(null);
    expect(file.persistent).to.equal(false);
    expect(lines.find((line) => line.level === 50)?.msg).to.match(/cannot create state_dir .*set state_dir to a directory this user may write/);
    // It keeps working, without saving.
    await file.writeAhead([['https://192.0.2.1', 'bans', '203.0.113.1', []]]);
    file.markDirty();
    await file.flush();
    await file.close();
    expect(file.writes + file.journalWrites).to.equal(0);
  });

  it('runs without saving, and says so, when state_dir exists but cannot be written', async () => {
    const { log, lines } = captureLog();
    await mkdir(join(dir, 'state.json.journal')); // stands for a read-only directory (tests may run as root)
    const file = new StateFile(join(dir, 'state.json'), () => '{}', log);
    expect(await file.load(decodeBridgeState)).to.equal(null);
    expect(file.persistent).to.equal(false);
    expect(lines.find((line) => line.level === 50)?.msg).to.match(/cannot write in state_dir .*runs without saving its state.*set state_dir to a directory this user may write/);
    await file.writeAhead([['https://192.0.2.1', 'bans', '203.0.113.1', []]]);
    file.markDirty();
    await file.flush();
  });

  it('reports a failed write: flush() and writeAhead() throw (after logging) and succeed once the problem is fixed', async () => {
    const { log, lines } = captureLog();
    const file = new StateFile(join(dir, 'state.json'), () => JSON.stringify({ value: 1 }), log, 60_000);
    expect(await file.load(() => null)).to.equal(null);
    expect(file.persistent).to.equal(true);

    await mkdir(join(dir, 'state.json.tmp')); // the snapshot's temp file cannot be written
    file.markDirty();
    let caught: unknown;
    await file.flush().catch((error: unknown) => (caught = error));
    expect((caught as Error | undefined)?.message).to.match(/cannot save the OPNsense bridge state file .*state\.json \(EISDIR.*check free space and permissions/);
    expect(lines.filter((line) => line.level === 50)).to.have.length(1);
    await rm(join(dir, 'state.json.tmp'), { recursive: true });
    await file.flush();
    expect(file.writes, 'still dirty after the failure, so written now').to.equal(1);

    await rm(join(dir, 'state.json.journal'));
    await mkdir(join(dir, 'state.json.journal'));
    caught = undefined;
    await file.writeAhead([['https://192.0.2.1', 'bans', '203.0.113.1', []]]).catch((error: unknown) => (caught = error));
    expect((caught as Error | undefined)?.message).to.match(/cannot record the addresses it is about to add in the OPNsense bridge state file .*state\.json\.journal \(EISDIR/);
    await rm(join(dir, 'state.json.journal'), { recursive: true });
    await file.writeAhead([['https://192.0.2.1', 'bans', '203.0.113.1', []]]);
    expect((await file.readJournal()).records).to.deep.equal([['https://192.0.2.1', 'bans', '203.0.113.1', []]]);
    await file.close();
  });

  it('logs a state that cannot be serialised instead of an unhandled rejection from its timer', async () => {
    const { log, lines } = captureLog();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let broken = true;
      const file = new StateFile(
        join(dir, 'state.json'),
        () => {
          if (broken) throw new RangeError('Invalid string length');
          return '{}';
        },
        log,
        1,
      );
      await file.load(() => null);
      file.markDirty();
      const error = await waitFor(() => lines.find((line) => line.level === 50), 'the error in the log');
      expect(error.msg).to.match(/cannot save the OPNsense bridge state file .* \(Invalid string length\)/);
      broken = false;
      await waitFor(() => file.writes === 1, 'a later write that works');
      await file.close();
      expect(unhandled).to.deep.equal([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('journals records between snapshots; each snapshot empties the journal; a torn last record is skipped', async () => {
    const { log } = captureLog();
    const path = join(dir, 'state.json');
    let value = 0;
    const file = new StateFile(path, () => JSON.stringify({ value }), log, 60_000);
    await file.load(() => null);
    await file.writeAhead([['a', 1], ['b', 2]]);
    await file.writeAhead([['c', 3]]);
    expect(await readFile(`${path}.journal`, 'utf8')).to.equal('{"generation":0}\n["a",1]\n["b",2]\n["c",3]\n');
    value = 1;
    file.markDirty();
    await file.flush();
    expect(await readFile(`${path}.journal`, 'utf8')).to.equal('');
    await file.writeAhead([['d', 4]]);

    // A crash in the middle of an append leaves half a line.
    await writeFile(`${path}.journal`, '["d",4]\n["e",', { flag: 'w' });
    const after = new StateFile(path, () => JSON.stringify({ value }), log, 60_000);
    expect(await after.load((json) => json)).to.deep.equal({ value: 1 });
    expect(await after.readJournal()).to.deep.equal({ records: [['d', 4]], skipped: 1 });
    await after.writeAhead([['f', 6]]);
    expect((await after.readJournal()).records, 'the next record is not glued to the torn one').to.deep.equal([['d', 4], ['f', 6]]);
  });

  it('ignores journal records left from before the snapshot (a crash between renaming the snapshot and emptying the journal)', async () => {
    const { log, lines } = captureLog();
    const path = join(dir, 'state.json');
    let value = 0;
    const serialise = (generation: number) => JSON.stringify({ generation, value });
    const file = new StateFile(path, serialise, log, 60_000);
    await file.load((json) => json);
    await file.writeAhead([['a', 1]]);
    const stale = await readFile(`${path}.journal`, 'utf8');
    expect(stale).to.equal('{"generation":0}\n["a",1]\n');
    value = 1;
    file.markDirty();
    await file.flush();
    expect(JSON.parse(await readFile(path, 'utf8'))).to.deep.equal({ generation: 1, value: 1 });

    // The normal case: what is appended after snapshot 1 follows it, and is replayed.
    await file.writeAhead([['b', 2]]);
    expect(await readFile(`${path}.journal`, 'utf8')).to.equal('{"generation":1}\n["b",2]\n');
    const normal = new StateFile(path, serialise, log, 60_000);
    await normal.load((json) => json);
    expect(await normal.readJournal()).to.deep.equal({ records: [['b', 2]], skipped: 0 });

    // The crash: snapshot 1 is in place, the journal still holds what it already includes.
    await writeFile(`${path}.journal`, stale);
    const crashed = new StateFile(path, serialise, log, 60_000);
    expect(await crashed.load((json) => json)).to.deep.equal({ generation: 1, value: 1 });
    expect(await crashed.readJournal(), 'the stale record is not replayed').to.deep.equal({ records: [], skipped: 0 });
    expect(lines.find((line) => line.level === 30 && /ignored 1 journal record\(s\) written before the snapshot of generation 1/.test(String(line.msg)))).to.not.equal(undefined);
    // Appends after it start a segment of their own, which is replayed; the stale one still is not.
    await crashed.writeAhead([['c', 3]]);
    const next = new StateFile(path, serialise, log, 60_000);
    await next.load((json) => json);
    expect((await next.readJournal()).records).to.deep.equal([['c', 3]]);

    // Same when emptying the journal failed: the snapshot is saved, later records start a new segment.
    value = 2;
    crashed.markDirty();
    await rm(`${path}.journal`);
    await mkdir(`${path}.journal`); // cannot be opened for truncation
    await crashed.flush().catch(() => undefined);
    expect(JSON.parse(await readFile(path, 'utf8'))).to.deep.equal({ generation: 2, value: 2 });
    await rm(`${path}.journal`, { recursive: true });
    await writeFile(`${path}.journal`, '{"generation":1}\n["c",3]\n'); // as it was before the failed truncation
    await crashed.writeAhead([['d', 4]]);
    const last = new StateFile(path, serialise, log, 60_000);
    await last.load((json) => json);
    expect((await last.readJournal()).records).to.deep.equal([['d', 4]]);
  });
});
