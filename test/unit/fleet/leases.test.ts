/** Leases in-process: each holding keeps the end its origin's bantime gave it, and goes at that end. */
import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetState } from '../../../agent/fleet/fleet-state.js';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { Projection, type Follower } from '../../../agent/fleet/projection.js';
import type { Action, SyncEvent } from '../../../src/event.js';
import { mustParseAddress } from '../../../src/ip.js';
import { decodeSnapshotPart, encodeSnapshot } from '../../../src/snapshot.js';
import { captureLog } from '../../support/capture-log.js';
import { waitFor } from '../../support/wait.js';
import { FleetHarness, parts } from './fleet-harness.js';

const SELF = 'host-b';

function event(action: Action, ip: string, origin: string, bantime?: number): SyncEvent {
  return { jail: 'sshd', action, address: mustParseAddress(ip), origin, ...(bantime === undefined ? {} : { bantime }) };
}

describe('leases: every holding ends at its end', () => {
  let dir: string;
  let open: FleetState[];
  /** What the sync jail sink was asked to do, in order: "ban sshd-sync 203.0.113.1". */
  let submitted: string[];
  /** The receiver's clock: the real one, shifted by `shiftMs`. */
  let shiftMs: number;
  const clock = () => Date.now() + shiftMs;

  function start() {
    const captured = captureLog();
    const holdings = new Holdings();
    const syncJails: Follower = {
      projection: new Projection(new Map([['sshd', 'sshd-sync']]), SELF),
      submit: (changes) => submitted.push(...changes.map(({ action, target, address }) => `${action} ${target} ${address}`)),
    };
    const fleet = new FleetState(holdings, dir, [syncJails], captured.log, { clock });
    fleet.load();
    open.push(fleet);
    return { fleet, holdings, projection: syncJails.projection, ...captured };
  }

  async function restart(fleet: FleetState) {
    await fleet.close();
    open.splice(open.indexOf(fleet), 1);
    return start();
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-leases-'));
    open = [];
    submitted = [];
    shiftMs = 0;
  });
  afterEach(async () => {
    for (const fleet of open) await fleet.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('releases a ban at its end with no unban, as an unban would, and counts it as an expiry', async () => {
    const { fleet } = start();
    const before = Date.now();
    fleet.apply(event('ban', '203.0.113.1', 'host-a', 1));
    expect(fleet.status()).to.deep.include({ leases: 1 });
    expect(fleet.status().nextLeaseEnd).to.be.within(before + 1_000, Date.now() + 1_000);
    expect(submitted).to.deep.equal(['ban sshd-sync 203.0.113.1']);
    await waitFor(() => submitted.length === 2, 'the release at the end', 5_000, 10);
    expect(Date.now(), 'never before its end').to.be.at.least(before + 1_000);
    expect(submitted[1]).to.equal('unban sshd-sync 203.0.113.1');
    expect(fleet.status()).to.deep.include({ total: 0, leases: 0, nextLeaseEnd: undefined, released: { unban: 0, snapshot: 0, expiry: 1 } });
  });

  it('the latest end wins; a ban until unbanned outlasts every end; an unban still releases at once', () => {
    const { fleet, holdings } = start();
    const now = clock();
    fleet.apply(event('ban', '203.0.113.2', 'host-a', 100));
    fleet.apply(event('ban', '203.0.113.2', 'host-a', 10));
    expect(holdings.leases.end('host-a', 'sshd', '203.0.113.2')).to.be.within(now + 100_000, clock() + 100_000);
    fleet.apply(event('ban', '203.0.113.2', 'host-a', 300));
    expect(holdings.leases.end('host-a', 'sshd', '203.0.113.2')).to.be.within(now + 300_000, clock() + 300_000);
    fleet.apply(event('ban', '203.0.113.2', 'host-a'));
    expect(holdings.leases.end('host-a', 'sshd', '203.0.113.2'), 'until unbanned').to.equal(undefined);
    fleet.apply(event('ban', '203.0.113.2', 'host-a', 5));
    expect(holdings.leases.end('host-a', 'sshd', '203.0.113.2'), 'still until unbanned').to.equal(undefined);

    fleet.apply(event('ban', '203.0.113.3', 'host-a', 100));
    fleet.apply(event('unban', '203.0.113.3', 'host-a'));
    expect(submitted.slice(-1)).to.deep.equal(['unban sshd-sync 203.0.113.3']);
    expect(fleet.status()).to.deep.include({ leases: 0, released: { unban: 1, snapshot: 0, expiry: 0 } });
  });

  it("one origin's end does not lift another's ban: the address stays until the last holding ends", () => {
    const { fleet, holdings, projection } = start();
    const now = clock();
    fleet.apply(event('ban', '203.0.113.4', 'host-a', 60));
    fleet.apply(event('ban', '203.0.113.4', 'host-c', 600));
    expect(projection.end(holdings, 'sshd-sync', '203.0.113.4')).to.be.within(now + 600_000, clock() + 600_000);
    fleet.apply(event('ban', '203.0.113.4', 'host-d'));
    expect(projection.end(holdings, 'sshd-sync', '203.0.113.4'), 'host-d holds it until unbanned').to.equal(undefined);
    fleet.apply(event('ban', '203.0.113.4', SELF, 6_000));
    fleet.apply(event('unban', '203.0.113.4', 'host-d'));
    expect(projection.end(holdings, 'sshd-sync', '203.0.113.4'), "this host's own ban does not count for its sync jail").to.be.within(now + 600_000, clock() + 600_000);
  });

  it('a sink that keeps ends itself (followsEnds) is handed a ban again when the end moves later, not when it does not', () => {
    const handed: string[] = [];
    const kernelSets: Follower = {
      projection: new Projection(new Map([['sshd', 'table']]), SELF),
      submit: (changes) => handed.push(...changes.map(({ action, address }) => `${action} ${address}`)),
      followsEnds: true,
    };
    const fleet = new FleetState(new Holdings(), dir, [kernelSets], captureLog().log, { clock });
    fleet.load();
    open.push(fleet);
    fleet.apply(event('ban', '203.0.113.9', 'host-a', 60));
    fleet.apply(event('ban', '203.0.113.9', 'host-a', 30));
    fleet.apply(event('ban', '203.0.113.9', 'host-c', 50));
    expect(handed).to.deep.equal(['ban 203.0.113.9']);
    fleet.apply(event('ban', '203.0.113.9', 'host-a', 600));
    fleet.apply(event('ban', '203.0.113.9', 'host-c'));
    fleet.apply(event('ban', '203.0.113.9', 'host-a', 6_000));
    expect(handed, 'later, then until unbanned; then nothing moves').to.deep.equal(['ban 203.0.113.9', 'ban 203.0.113.9', 'ban 203.0.113.9']);
    expect(submitted, 'the sync jails do not follow ends').to.deep.equal([]);
  });

  it('a ban whose time is up already holds nothing', () => {
    const { fleet } = start();
    fleet.apply(event('ban', '203.0.113.5', 'host-a', 0));
    expect(fleet.status()).to.deep.include({ total: 0, leases: 0 });
    expect(submitted).to.deep.equal([]);
  });

  it('an agent that starts after an outage releases what ended meanwhile before it projects anything, by its own clock', async () => {
    const first = start();
    first.fleet.apply(event('ban', '203.0.113.6', 'host-a', 30));
    first.fleet.apply(event('ban', '203.0.113.7', 'host-a', 90));
    first.fleet.apply(event('ban', '203.0.113.8', 'host-a'));
    submitted = [];
    shiftMs = 60_000; // a minute later
    const second = await restart(first.fleet);
    expect(second.holdings.origins('sshd', '203.0.113.6')).to.deep.equal([]);
    expect(second.holdings.origins('sshd', '203.0.113.7')).to.deep.equal(['host-a']);
    expect(second.holdings.origins('sshd', '203.0.113.8')).to.deep.equal(['host-a']);
    expect([...second.projection.released(second.holdings, 'sshd-sync')], "for the sink's reconciliation to remove").to.deep.equal(['203.0.113.6']);
    expect(second.fleet.status()).to.deep.include({ leases: 1, released: { unban: 0, snapshot: 0, expiry: 1 } });
    expect(second.lines.some((line) => line.msg === 'released 1 holding(s) whose bantime ended while the agent was not running')).to.equal(true);

    // The release went to the journal: the next start does not find it again.
    const third = await restart(second.fleet);
    expect(third.fleet.status()).to.deep.include({ total: 2, leases: 1, released: { unban: 0, snapshot: 0, expiry: 0 } });
  });

  it('keeps ends in the store in lines of their own, after the holdings: old stores load as until unbanned, bad lines are skipped', async () => {
    const now = Date.now();
    await writeFile(
      join(dir, 'holdings.snapshot'),
      [
        '+ host-a sshd 203.0.113.10', // a store of an earlier version
        '+ host-a sshd 203.0.113.11',
        `E host-a sshd ${now + 3_600_000} 203.0.113.11`,
        '+ host-a sshd 203.0.113.12',
        `E host-a sshd ${now + 3_600_000} 203.0.113.12`,
        'E host-a sshd -1 203.0.113.12', // a later ban until unbanned
        `E host-a sshd ${now + 3_600_000} 203.0.113.13`, // no such holding
        'E host-a sshd soon 203.0.113.10',
        '',
      ].join('\n'),
    );
    const { fleet, holdings, lines } = start();
    expect(holdings.size).to.equal(3);
    expect(holdings.leases.end('host-a', 'sshd', '203.0.113.10')).to.equal(undefined);
    expect(holdings.leases.end('host-a', 'sshd', '203.0.113.11')).to.equal(now + 3_600_000);
    expect(holdings.leases.end('host-a', 'sshd', '203.0.113.12')).to.equal(undefined);
    expect(fleet.status().leases).to.equal(1);
    expect(lines.some((line) => line.skipped === 1)).to.equal(true);

    fleet.apply(event('ban', '203.0.113.14', 'host-a', 60));
    const journal = await readFile(join(dir, 'holdings.journal'), 'utf8');
    expect(journal).to.match(/\n\+ host-a sshd 203\.0\.113\.14\nE host-a sshd \d+ 203\.0\.113\.14\n$/);
    await fleet.close();
    open.length = 0;
    const snapshot = await readFile(join(dir, 'holdings.snapshot'), 'utf8');
    expect(snapshot.split('\n').filter((line) => line.startsWith('E ')).length, 'compacted: one line per lease').to.equal(2);
  });

  it("a ban of an address whose snapshot release is under way keeps it until its end, after a kill -9 too", async () => {
    const harness = await FleetHarness.create();
    try {
      const { fleet, holdings } = harness.start();
      fleet.apply(event('ban', '203.0.113.30', 'host-x', 3_600));
      fleet.apply(event('ban', '203.0.113.31', 'host-x', 3_600));
      const end = holdings.leases.end('host-x', 'sshd', '203.0.113.30')!;
      // An empty snapshot: both go, in slices; one is banned again (a shorter ban: its end stays) before its turn.
      for (const part of parts('host-x', [])) fleet.applySnapshotPart(part);
      fleet.apply(event('ban', '203.0.113.30', 'host-x', 60));
      const crashed = await harness.crashed();
      await waitFor(() => fleet.status().releasing === 0, 'the release');
      expect(holdings.leases.end('host-x', 'sshd', '203.0.113.30')).to.equal(end);
      const restarted = crashed.start();
      expect(restarted.holdings.origins('sshd', '203.0.113.31')).to.deep.equal([]);
      expect(restarted.holdings.leases.end('host-x', 'sshd', '203.0.113.30'), 'after a kill -9').to.equal(end);
    } finally {
      await harness.cleanUp();
    }
  });

  it("a snapshot's entries carry their ends", () => {
    const { fleet, holdings } = start();
    const now = clock();
    for (const payload of encodeSnapshot('host-a', ['203.0.113.20', '203.0.113.21'], [120, -1])) {
      const decoded = decodeSnapshotPart('f2b/sshd/snapshot', Buffer.from(payload));
      if (!decoded.ok) throw new Error(decoded.detail);
      fleet.applySnapshotPart(decoded.part);
    }
    expect(holdings.leases.end('host-a', 'sshd', '203.0.113.20')).to.be.within(now + 120_000, clock() + 120_000);
    expect(holdings.leases.end('host-a', 'sshd', '203.0.113.21')).to.equal(undefined);
  });
});
