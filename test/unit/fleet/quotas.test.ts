/** Issue 25, finding 1: one origin (a leaked account, or a claimed origin) cannot make another origin's ban be refused. */
import { expect } from 'chai';
import { DEFAULT_LIMITS } from '../../../agent/fleet/holdings.js';
import { parseConfig } from '../../../src/config.js';
import { waitFor } from '../../support/wait.js';
import { FleetHarness, addresses, event, heldBy, parts } from './fleet-harness.js';

describe('fleet state: quotas, so that no origin crowds out another', function () {
  this.timeout(60_000);
  let harness: FleetHarness;
  beforeEach(async () => (harness = await FleetHarness.create()));
  afterEach(async () => harness.cleanUp());

  it('the default quota fits a real host: 100,000 bans per origin and jail, in a store of 2,000,000', () => {
    expect(DEFAULT_LIMITS).to.deep.equal({ total: 2_000_000, perOrigin: 100_000 });
    expect(parseConfig('[jails]\nsshd = sshd-sync\n', 'config.cfg').holdingLimits).to.deep.equal(DEFAULT_LIMITS);
  });

  it("an origin's never-completed snapshot counts against its quota; another origin's ban still goes through; status names the origin", async () => {
    const { fleet, status, lines } = harness.start({ total: 2_000_000, perOrigin: 10_000 }, 50);
    // A snapshot of 20,000 whose first part never comes: the other parts are held up to the quota.
    const flood = parts('mallory', addresses(0, 20_000)).slice(1);
    expect(flood.length).to.be.greaterThan(2);
    for (const part of flood) expect(fleet.applySnapshotPart(part)).to.equal('queued');
    expect(fleet.status().holdings.sshd?.mallory).to.equal(10_000);
    fleet.apply(event('ban', '203.0.113.1', 'host-a'));
    expect(harness.submitted.at(-1)).to.equal('ban sshd-sync 203.0.113.1');
    fleet.apply(event('ban', '203.0.113.2', 'mallory'));
    expect(fleet.holdings.isHeld('sshd', '203.0.113.2'), "mallory's further bans are refused").to.equal(false);
    const sent = flood.reduce((sum, part) => sum + part.ips.length, 0);
    expect(fleet.status().refused.quota).to.equal(sent - 10_000 + 1);
    const problems = status().problems.map((problem) => problem.what);
    expect(problems).to.deep.equal(["origin mallory holds 10000 bans in sshd, its quota: its further bans there are refused (other origins' are not)"]);
    expect(lines.some((line) => line.level === 50 && /mallory holds 10000 bans in sshd, its quota \(max_holdings_per_origin\)/.test(String(line.msg)))).to.equal(true);
    const [snapshot] = await waitFor(() => (fleet.status().snapshots.length > 0 ? fleet.status().snapshots : undefined), 'the snapshot past its deadline', 10_000, 10);
    expect(snapshot).to.include({ origin: 'mallory', complete: false, added: 10_000, refused: sent - 10_000 });
  });

  it('a full store refuses an origin at its share, never one under it: the oldest holding of the origin most over its share makes room', () => {
    const { fleet, status } = harness.start({ total: 1_000, perOrigin: 800 });
    fleet.addAll('mallory', 'sshd', addresses(1, 700));
    fleet.addAll('host-c', 'sshd', addresses(2, 300));
    expect(fleet.status().total).to.equal(1_000);
    // Two origins: a share is 500. mallory holds 700.
    fleet.apply(event('ban', '203.0.113.10', 'mallory'));
    expect(fleet.holdings.isHeld('sshd', '203.0.113.10')).to.equal(false);
    harness.submitted.length = 0;
    // A third origin: a share is 333; host-a holds nothing.
    fleet.apply(event('ban', '203.0.113.11', 'host-a'));
    expect(fleet.holdings.origins('sshd', '203.0.113.11')).to.deep.equal(['host-a']);
    expect(harness.submitted, "mallory's oldest holding gives way").to.deep.equal(['unban sshd-sync 10.1.0.0', 'ban sshd-sync 203.0.113.11']);
    expect(fleet.status()).to.deep.include({ total: 1_000, evicted: 1, refused: { quota: 0, full: 1, crowded: 0 } });
    // host-c holds 300, under its share: its bans go in too, each taking the place of one of mallory's.
    fleet.addAll('host-c', 'sshd', addresses(3, 30));
    expect(fleet.status().holdings.sshd).to.deep.equal({ mallory: 669, 'host-c': 330, 'host-a': 1 });
    expect(heldBy(fleet, 'mallory')[0], 'the oldest go first').to.equal('10.1.0.31');
    const full = status().problems.find((problem) => problem.what.startsWith('the holdings store is full'));
    expect(full?.what).to.match(/the largest: mallory \(669\), host-c \(330\), host-a \(1\)/);
  });

  it('the store a restart loads is the one it refused and evicted into', async () => {
    const first = harness.start({ total: 1_000, perOrigin: 700 });
    first.fleet.addAll('mallory', 'sshd', addresses(1, 800));
    first.fleet.addAll('host-c', 'sshd', addresses(2, 400));
    const before = first.fleet.status().holdings;
    expect(before.sshd).to.deep.equal({ mallory: 600, 'host-c': 400 });
    const crashed = await harness.crashed();
    expect(crashed.start({ total: 1_000, perOrigin: 700 }).fleet.status().holdings).to.deep.equal(before);
  });
});
