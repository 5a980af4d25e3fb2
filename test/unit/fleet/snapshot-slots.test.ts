/** Issue 25, finding 6: snapshots are received per origin, not in one pool for the fleet. */
import { expect } from 'chai';
import type { SnapshotPart } from '../../../src/snapshot.js';
import { FleetHarness, releasesDone } from './fleet-harness.js';

/** Part `part` of `parts` of a snapshot from `origin` in sshd, with one address. */
function part(origin: string, index: number, part: number, parts: number): SnapshotPart {
  return { jail: 'sshd', origin, id: index.toString(16).padStart(16, '0'), part, parts, ips: [`198.51.${index >> 8}.${index & 255}`], invalid: 0, entries: 1 };
}

describe('fleet state: snapshot slots per origin', function () {
  this.timeout(60_000);
  let harness: FleetHarness;
  beforeEach(async () => (harness = await FleetHarness.create()));
  afterEach(async () => harness.cleanUp());

  it("5,000 never-completed snapshots under forged origins keep no host's snapshot out: 1,000 hosts' snapshots, received together, all complete", async () => {
    const { fleet } = harness.start();
    // Part 1 of 2 from each forged origin; part 2 never comes.
    for (let i = 0; i < 5_000; i++) expect(fleet.applySnapshotPart(part(`forged-${i}`, i, 0, 2))).to.equal('queued');
    // 1,000 hosts' snapshots of 2 parts each, their parts interleaved as a broker delivers them.
    for (let i = 0; i < 1_000; i++) fleet.applySnapshotPart(part(`host-${i}`, i, 0, 2));
    for (let i = 0; i < 1_000; i++) fleet.applySnapshotPart(part(`host-${i}`, i, 1, 2));
    await releasesDone(fleet);
    const complete = fleet.status().snapshots.filter((snapshot) => snapshot.origin.startsWith('host-') && snapshot.complete);
    expect(complete.length).to.equal(1_000);
    expect(fleet.holdings.origins('sshd', '198.51.3.231')).to.include('host-999');
  });

  it("the status's per-snapshot gauges follow the last snapshots, the oldest forgotten with them", async () => {
    const { fleet } = harness.start();
    for (let i = 0; i < 5_000; i++) fleet.applySnapshotPart(part(`host-${i}`, i, 0, 1));
    await releasesDone(fleet);
    const { snapshots, snapshotGauges } = fleet.status();
    expect(snapshots.length).to.be.within(3_000, 4_096);
    expect(Object.keys(snapshotGauges.complete)).to.have.members(snapshots.map((snapshot) => `${snapshot.origin} ${snapshot.jail}`));
    expect(Object.keys(snapshotGauges.at)).to.have.members(Object.keys(snapshotGauges.complete));
    expect(snapshotGauges.complete['host-4999 sshd']).to.equal(1);
    expect(snapshotGauges.complete['host-0 sshd'], 'the oldest forgotten').to.equal(undefined);
    expect(snapshotGauges.at['host-4999 sshd']).to.be.closeTo(Date.now() / 1000, 60);
  });
});
