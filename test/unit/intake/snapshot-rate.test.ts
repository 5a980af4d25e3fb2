/** Issue 25, finding 1: a snapshot part costs the rate limit by its size, not one token whatever it holds. */
import { expect } from 'chai';
import { pino } from 'pino';
import type { RouteResult } from '../../../agent/fleet/fleet-state.js';
import { Intake, type EventTarget } from '../../../agent/intake/intake.js';
import { NeverBanList } from '../../../src/never-ban.js';
import { RateLimiter } from '../../../src/rate-limit.js';
import { Refusals } from '../../../src/refusals.js';
import { encodeSnapshot, MAX_SNAPSHOT_PART_BYTES, type SnapshotPart } from '../../../src/snapshot.js';

class Counting implements EventTarget {
  parts: SnapshotPart[] = [];
  events = 0;
  apply(): RouteResult {
    this.events += 1;
    return 'queued';
  }
  applySnapshotPart(part: SnapshotPart): RouteResult {
    this.parts.push(part);
    return 'queued';
  }
  onlyNotes(): boolean {
    return false;
  }
}

describe('intake: what a snapshot part costs the rate limit', () => {
  it("parts of 64 KiB drain a connection's burst as the same bytes of events would; another connection's events still pass", () => {
    const target = new Counting();
    const refusals = new Refusals(pino({ level: 'silent' }));
    // A burst of 2,000 (the default is 20,000), and no refill during the test.
    const intake = new Intake(new NeverBanList([], []), target, refusals, new RateLimiter({ perSecond: 200, burst: 2_000 }, () => 0));
    try {
      const addresses = Array.from({ length: 100_000 }, (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
      const payloads = encodeSnapshot('mallory', addresses).map((payload) => Buffer.from(payload));
      expect(payloads.length).to.be.greaterThan(20);
      for (const payload of payloads.slice(0, -1)) expect(payload.length).to.be.within(MAX_SNAPSHOT_PART_BYTES - 64, MAX_SNAPSHOT_PART_BYTES);
      // One connection sends the same snapshot again and again.
      for (const payload of [...payloads, ...payloads, ...payloads]) intake.handle('f2b/sshd/snapshot', payload, 'hub');
      // 2,000 tokens of 1 KiB: 31 parts of 64 KiB (and the snapshot's small last ones), not 2,000.
      expect(target.parts.length).to.be.within(31, 34);
      expect(refusals.byReason()).to.deep.equal({ 'rate-limited': payloads.length * 3 - target.parts.length });
      for (let i = 0; i < 100; i++) intake.handle('f2b/sshd/ban', Buffer.from(JSON.stringify({ ip: `203.0.113.${i}`, origin: 'host-a' })), 'hub');
      expect(target.events).to.equal(100);
    } finally {
      refusals.close();
    }
  });
});
