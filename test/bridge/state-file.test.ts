import { expect } from 'chai';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DesiredState } from '../../agent/bridge/desired-state.js';
import { FirewallLedger } from '../../agent/bridge/ledger.js';
import { decodeBridgeState, encodeBridgeState } from '../../agent/bridge/persisted-state.js';
import { StateFile } from '../../agent/bridge/state-file.js';
import { captureLog } from '../support/capture-log.js';

describe('bridge state file', function () {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-state-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips wanted addresses and the ledger, skipping entries that are not canonical', async () => {
    const desired = new DesiredState();
    desired.hold('bans', '203.0.113.1', 'host-a/sshd');
    desired.hold('bans', '2001:db8::1', '@manual/sshd');
    const ledger = new FirewallLedger('https://192.0.2.1');
    ledger.add('bans', '203.0.113.1');
    const json = JSON.parse(encodeBridgeState(desired, [ledger])) as { wanted: Record<string, Record<string, string[]>> };
    json.wanted.bans!['2001:DB8::2'] = ['host-a/sshd'];
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
  });
});
