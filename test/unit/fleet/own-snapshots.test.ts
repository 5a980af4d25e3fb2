/** What -f asks the agent: whether this host's own snapshot came back whole through the broker (issue 25, finding 6). */
import { expect } from 'chai';
import { pino } from 'pino';
import { Intake } from '../../../agent/intake/intake.js';
import { NeverBanList } from '../../../src/never-ban.js';
import { RateLimiter } from '../../../src/rate-limit.js';
import { Refusals } from '../../../src/refusals.js';
import { encodeSnapshot } from '../../../src/snapshot.js';
import { measuredBy } from '../../support/status.js';
import { FleetHarness, SELF, addresses, parts } from './fleet-harness.js';

describe("fleet state: this host's own snapshots, as they come back", () => {
  let harness: FleetHarness;
  beforeEach(async () => (harness = await FleetHarness.create()));
  afterEach(async () => harness.cleanUp());

  /** The status detail -f reads: "snapshot <node> <jail>". */
  const ownDetail = (status: ReturnType<ReturnType<FleetHarness['start']>['status']>) => status.details[`snapshot ${SELF} sshd`] as { fields: Record<string, unknown> } | undefined;

  it('notes each part of its own snapshot (which its sync jails do not take), shows it with its id while it comes and once whole, and holds nothing of it', () => {
    const { fleet, status } = harness.start();
    const own = parts(SELF, addresses(0, 12_000));
    expect(own.length).to.be.greaterThan(2);
    expect(fleet.applySnapshotPart(own[0]!)).to.equal('own');
    expect(ownDetail(status())?.fields).to.include({ id: own[0]!.id, complete: false, parts_received: 1, parts: own.length });
    // Others' snapshots after it do not push it out of the status.
    for (let i = 0; i < 30; i++) for (const part of parts(`host-${i}`, [`203.0.113.${i}`])) fleet.applySnapshotPart(part);
    for (const part of own.slice(1)) fleet.applySnapshotPart(part);
    expect(ownDetail(status())?.fields).to.include({ id: own[0]!.id, complete: true, parts_received: own.length });
    expect(fleet.status().holdings[`sshd`]?.[SELF], 'nothing held of it').to.equal(undefined);
    expect(harness.submitted.filter((line) => line.includes(' 10.0.'))).to.deep.equal([]);
  });

  it("takes its own parts through the intake from their envelope (their entries reach nothing here), and a peer's parts entry by entry", () => {
    const { fleet, status } = harness.start();
    const refusals = new Refusals(pino({ level: 'silent' }));
    const intake = new Intake(new NeverBanList([], []), fleet, refusals, new RateLimiter({ perSecond: 1_000, burst: 1_000 }));
    try {
      const entries = ['203.0.113.5', 'not-an-address', '127.0.0.1'];
      const send = (origin: string) => encodeSnapshot(origin, entries).forEach((payload) => intake.handle('f2b/sshd/snapshot', Buffer.from(payload), 'test'));
      send(SELF);
      expect(ownDetail(status())?.fields, 'noted whole, with what it carried').to.include({ complete: true, addresses: 3 });
      expect(refusals.byReason(), 'its entries were not read').to.deep.equal({});
      send('host-x');
      expect(fleet.status().holdings.sshd, "only the peer's valid address is held").to.deep.equal({ 'host-x': 1 });
      expect(harness.submitted).to.deep.equal(['ban sshd-sync 203.0.113.5']);
      expect(measuredBy(intake.status(), 'refused')).to.deep.include({ 'bad-address': 1, 'never-ban': 1 });
    } finally {
      refusals.close();
    }
  });
});
