/** The holdings store and its projections in-process: who holds a ban, what reaches a sink, what survives a crash. */
import { expect } from 'chai';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetState } from '../../../agent/fleet/fleet-state.js';
import { Holdings, MAX_ORIGINS_PER_ADDRESS } from '../../../agent/fleet/holdings.js';
import { Projection, type Follower } from '../../../agent/fleet/projection.js';
import type { Action, SyncEvent } from '../../../src/event.js';
import { ConfigError } from '../../../src/config-reader.js';
import { mustParseAddress } from '../../../src/ip.js';
import { encodeSnapshot, decodeSnapshotPart, MAX_SNAPSHOT_PART_BYTES, type SnapshotPart } from '../../../src/snapshot.js';
import { captureLog } from '../../support/capture-log.js';
import { waitFor } from '../../support/wait.js';

const SELF = 'host-b';

function event(action: Action, ip: string, origin?: string, jail = 'sshd'): SyncEvent {
  return { jail, action, address: mustParseAddress(ip), ...(origin === undefined ? {} : { origin }) };
}

/** The parts of a snapshot as a receiver decodes them. */
function parts(origin: string, addresses: string[], jail = 'sshd'): SnapshotPart[] {
  return encodeSnapshot(origin, addresses).map((payload) => {
    const decoded = decodeSnapshotPart(`f2b/${jail}/snapshot`, Buffer.from(payload));
    if (!decoded.ok) throw new Error(decoded.detail);
    return decoded.part;
  });
}

/** Waits until no complete snapshot's release is under way. */
async function released(fleet: FleetState): Promise<void> {
  await waitFor(() => fleet.status().releasing === 0, 'the releases under way', 5_000, 1);
}

function heldBy(fleet: FleetState, origin: string, jail = 'sshd'): string[] {
  return [...fleet.holdings.heldBy(origin, jail).keys()];
}

describe('fleet state: the holdings store and its projections', () => {
  let dir: string;
  let open: FleetState[];
  /** What the sync jail sink was asked to do, in order: "ban sshd-sync 203.0.113.1". */
  let submitted: string[];

  function start(options: { snapshotDeadlineMs?: number } = {}) {
    const captured = captureLog();
    const holdings = new Holdings();
    const syncJails: Follower = {
      projection: new Projection(new Map([['sshd', 'sshd-sync']]), SELF),
      submit: (changes) => submitted.push(...changes.map(({ action, target, address }) => `${action} ${target} ${address}`)),
    };
    const fleet = new FleetState(holdings, dir, [syncJails], captured.log, { snapshotDeadlineMs: options.snapshotDeadlineMs, nodeId: SELF });
    const loaded = fleet.load();
    open.push(fleet);
    return { fleet, holdings, syncJails, loaded, ...captured };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-fleet-'));
    open = [];
    submitted = [];
  });
  afterEach(async () => {
    for (const fleet of open) await fleet.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps an address banned while any origin holds it: A and C ban, A unbans, it stays until C unbans', () => {
    const { fleet } = start();
    fleet.apply(event('ban', '203.0.113.1', 'host-a'));
    fleet.apply(event('ban', '203.0.113.1', 'host-c'));
    fleet.apply(event('unban', '203.0.113.1', 'host-a'));
    expect(submitted).to.deep.equal(['ban sshd-sync 203.0.113.1']);
    fleet.apply(event('unban', '203.0.113.1', 'host-c'));
    expect(submitted).to.deep.equal(['ban sshd-sync 203.0.113.1', 'unban sshd-sync 203.0.113.1']);
  });

  it("an origin's unban of a ban it does not hold is counted and changes nothing; a bare unban clears every holding", () => {
    const { fleet } = start();
    fleet.apply(event('ban', '203.0.113.2', 'host-a'));
    fleet.apply(event('ban', '203.0.113.2', 'host-c'));
    fleet.apply(event('unban', '203.0.113.2', 'mallory'));
    expect(fleet.status()).to.deep.include({ unbansWithoutHolding: 1, total: 2 });
    expect(submitted).to.deep.equal(['ban sshd-sync 203.0.113.2']);
    fleet.apply(event('unban', '203.0.113.2'));
    expect(fleet.status()).to.deep.include({ total: 0, holdings: {} });
    expect(submitted.at(-1)).to.equal('unban sshd-sync 203.0.113.2');
  });

  it("this host's own bans are held (for the aliases) but never projected into its own sync jail", () => {
    const { fleet } = start();
    expect(fleet.apply(event('ban', '203.0.113.3', SELF))).to.equal('own');
    expect(fleet.apply(event('ban', '203.0.113.3', 'host-a', 'postfix'))).to.equal('unmapped');
    expect(submitted).to.deep.equal([]);
  });

  it('refuses more origins per address than the cap, and the address stays held through the others', () => {
    const { fleet, lines } = start();
    for (let i = 0; i <= MAX_ORIGINS_PER_ADDRESS; i++) fleet.apply(event('ban', '203.0.113.4', `h${i}`));
    expect(fleet.status()).to.deep.include({ total: MAX_ORIGINS_PER_ADDRESS, refused: { quota: 0, full: 0, crowded: 1 } });
    expect(lines.some((line) => line.level === 50 && /already has 64 holders: one more \(h64\) refused/.test(String(line.msg)))).to.equal(true);
  });

  it('survives a crash at any point: every change is in the journal when apply() returns, a torn last line is skipped', async () => {
    const first = start();
    first.fleet.apply(event('ban', '203.0.113.5', 'host-a'));
    first.fleet.apply(event('ban', '2001:db8::5', 'host-c'));
    first.fleet.apply(event('ban', '203.0.113.6', 'host-a'));
    first.fleet.apply(event('unban', '203.0.113.6', 'host-a'));
    // No close(): the process died; then a write torn half-way.
    open = [];
    await appendFile(join(dir, 'holdings.journal'), '+ host-a sshd 203.0.1');
    const second = start();
    expect(second.fleet.status().holdings).to.deep.equal({ sshd: { 'host-a': 1, 'host-c': 1 } });
    expect(second.holdings.origins('sshd', '2001:db8::5')).to.deep.equal(['host-c']);
    expect(second.loaded).to.include({ fresh: false, skipped: 1 });
    expect([...second.holdings.released('sshd')], 'released, so reconciliation may remove it').to.deep.equal(['203.0.113.6']);
    second.fleet.apply(event('ban', '203.0.113.7', 'host-a'));
    await second.fleet.close();
    open = [];
    const third = start();
    expect(third.fleet.status().total, 'the line after the torn one is read').to.equal(3);
  });

  it('compacts into a snapshot on close; replaying a journal the snapshot already holds gives the same state', async () => {
    const first = start();
    for (let i = 0; i < 300; i++) first.fleet.apply(event('ban', `10.0.${i >> 8}.${i & 255}`, 'host-a'));
    first.fleet.apply(event('unban', '10.0.0.0', 'host-a'));
    const journal = await readFile(join(dir, 'holdings.journal'), 'utf8');
    await first.fleet.close();
    open = [];
    expect((await readdir(dir)).sort()).to.deep.equal(['holdings.journal', 'holdings.snapshot']);
    expect(await readFile(join(dir, 'holdings.journal'), 'utf8')).to.equal('');
    // A crash between renaming the snapshot and emptying the journal.
    await writeFile(join(dir, 'holdings.journal'), journal);
    const second = start();
    expect(second.fleet.status().total).to.equal(299);
    expect(second.holdings.isHeld('sshd', '10.0.0.0')).to.equal(false);
  });

  it('compacts from a timer, not while taking a change; what is taken after it survives a crash', async () => {
    const first = start();
    const addresses = Array.from({ length: 60_000 }, (_, i) => `10.2.${i >> 8}.${i & 255}`);
    for (let i = 0; i < addresses.length; i += 1_000) first.fleet.addAll('host-a', 'sshd', addresses.slice(i, i + 1_000));
    expect(await readdir(dir), 'not compacted inside addAll()').to.not.include('holdings.snapshot');
    first.fleet.apply(event('unban', addresses[0]!, 'host-a'));
    await waitFor(async () => (await readdir(dir)).includes('holdings.snapshot') && !(await readdir(dir)).includes('holdings.journal.compacting'), 'the compaction');
    expect((await readFile(join(dir, 'holdings.journal'), 'utf8')).split('\n').length, 'the journal emptied').to.be.below(10);
    first.fleet.apply(event('ban', '203.0.113.14', 'host-c'));
    first.fleet.apply(event('unban', addresses[1]!, 'host-a'));
    // No close(): the process died.
    open = [];
    const second = start();
    expect(second.fleet.status().holdings).to.deep.equal({ sshd: { 'host-a': addresses.length - 2, 'host-c': 1 } });
    expect(second.loaded.skipped).to.equal(0);
  });

  it('a crash in the middle of a compaction (journal moved aside, snapshot not yet written) loses nothing', async () => {
    await writeFile(join(dir, 'holdings.snapshot'), '+ host-a sshd 203.0.113.15\n+ host-a sshd 203.0.113.16\n');
    await writeFile(join(dir, 'holdings.journal.compacting'), '- host-a sshd 203.0.113.15\n+ host-c sshd 203.0.113.17\n');
    await writeFile(join(dir, 'holdings.journal'), '- host-c sshd 203.0.113.17\n+ host-c sshd 203.0.113.18\n');
    const { fleet, loaded } = start();
    expect(loaded.fresh).to.equal(false);
    expect([...fleet.holdings.entries('sshd')].map(([address]) => address).sort()).to.deep.equal(['203.0.113.16', '203.0.113.18']);
    await fleet.close();
    open = [];
    expect((await readdir(dir)).sort(), 'the next compaction ends it').to.deep.equal(['holdings.journal', 'holdings.snapshot']);
    expect(start().fleet.status().total).to.equal(2);
  });

  it('skips lines that are not valid (a hand edit) and says so', async () => {
    await writeFile(join(dir, 'holdings.snapshot'), ['+ host-a sshd 203.0.113.8', '+ host-a sshd 203.0.113.08', '+ $(id) sshd 203.0.113.9', '+ host-a ../x 203.0.113.9', 'garbage', ''].join('\n'));
    const { fleet, loaded, lines } = start();
    expect(fleet.status().total).to.equal(1);
    expect(loaded.skipped).to.equal(4);
    expect(lines.some((line) => /skipped 4 invalid line/.test(String(line.msg)))).to.equal(true);
  });

  it('refuses to start, naming state_dir and the fix, when the store cannot be kept there', async () => {
    await writeFile(join(dir, 'a-file'), '');
    const fleet = new FleetState(new Holdings(), join(dir, 'a-file', 'state'), [], captureLog().log);
    expect(() => fleet.load()).to.throw(ConfigError, /^state_dir: cannot keep the holdings store in .*a-file\/state \(ENOTDIR.*\); fix: set state_dir to a directory this user may create and write/);
  });

  it('a complete snapshot replaces the origin\'s holdings; another origin\'s stay; an empty one releases all', async () => {
    const { fleet } = start();
    fleet.apply(event('ban', '203.0.113.10', 'host-a'));
    fleet.apply(event('ban', '203.0.113.11', 'host-a'));
    fleet.apply(event('ban', '203.0.113.11', 'host-c'));
    for (const part of parts('host-a', ['203.0.113.12'])) fleet.applySnapshotPart(part);
    await released(fleet);
    expect(heldBy(fleet, 'host-a')).to.deep.equal(['203.0.113.12']);
    expect(fleet.holdings.origins('sshd', '203.0.113.11')).to.deep.equal(['host-c']);
    expect(submitted).to.deep.equal(['ban sshd-sync 203.0.113.10', 'ban sshd-sync 203.0.113.11', 'ban sshd-sync 203.0.113.12', 'unban sshd-sync 203.0.113.10']);
    for (const part of parts('host-a', [])) fleet.applySnapshotPart(part);
    await released(fleet);
    expect(fleet.status().holdings).to.deep.equal({ sshd: { 'host-c': 1 } });
    expect(fleet.status().snapshots.map((s) => [s.origin, s.complete, s.released])).to.deep.equal([['host-a', true, 1]]);
  });

  it('a late duplicate part of a finished snapshot changes nothing, even after a newer snapshot completed', async () => {
    const { fleet } = start();
    const older = parts('host-a', ['203.0.113.30']);
    const newer = parts('host-a', ['203.0.113.31']);
    for (const part of [...older, ...newer]) fleet.applySnapshotPart(part);
    await released(fleet);
    expect(heldBy(fleet, 'host-a')).to.deep.equal(['203.0.113.31']);
    const before = fleet.status().snapshots;
    for (const part of [...older, ...newer]) expect(fleet.applySnapshotPart(part)).to.equal('queued');
    await released(fleet);
    expect(heldBy(fleet, 'host-a'), 'the older snapshot neither re-adds nor releases').to.deep.equal(['203.0.113.31']);
    expect(fleet.status().snapshots, 'the last snapshot stays the newer, complete one').to.deep.equal(before);
    expect(before.map((s) => [s.id, s.complete])).to.deep.equal([[newer[0]!.id, true]]);
    expect(submitted).to.deep.equal(['ban sshd-sync 203.0.113.30', 'ban sshd-sync 203.0.113.31', 'unban sshd-sync 203.0.113.30']);
  });

  it('a snapshot with a part missing only adds, once its deadline passes, and says so', async () => {
    const { fleet, lines } = start({ snapshotDeadlineMs: 50 });
    fleet.apply(event('ban', '203.0.113.20', 'host-a'));
    const addresses = Array.from({ length: 12_000 }, (_, i) => `10.1.${i >> 8}.${i & 255}`);
    const all = parts('host-a', addresses);
    expect(all.length).to.be.greaterThan(2);
    for (const part of all.slice(1)) fleet.applySnapshotPart(part);
    await waitFor(() => fleet.status().snapshots.length === 1, 'the snapshot past its deadline', 5_000, 10);
    const [result] = fleet.status().snapshots;
    expect(result).to.include({ complete: false, partsReceived: all.length - 1, parts: all.length, released: 0 });
    expect(fleet.holdings.isHeld('sshd', '203.0.113.20'), 'nothing released').to.equal(true);
    expect(fleet.status().total).to.equal(1 + addresses.length - all[0]!.ips.length);
    expect(lines.some((line) => line.level === 40 && /incomplete snapshot of sshd from host-a/.test(String(line.msg)))).to.equal(true);
  });

  it('cuts a snapshot into parts of at most 64 KiB, every address in exactly one', () => {
    const addresses = Array.from({ length: 20_000 }, (_, i) => `2001:db8:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::ffff:1`);
    const payloads = encodeSnapshot('host-a', addresses);
    for (const payload of payloads) expect(Buffer.byteLength(payload)).to.be.at.most(MAX_SNAPSHOT_PART_BYTES);
    const decoded = parts('host-a', addresses);
    expect(decoded.flatMap((part) => part.ips)).to.deep.equal(addresses.map((address) => mustParseAddress(address).text));
    expect(new Set(decoded.map((part) => part.id)).size).to.equal(1);
  });
});
