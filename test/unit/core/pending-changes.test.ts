import { expect } from 'chai';
import type { Change } from '../../../agent/fleet/projection.js';
import { PendingChanges } from '../../../agent/sinks/pending-changes.js';

const ban = (address: string, target = 'sshd-sync'): Change => ({ target, action: 'ban', address });
const unban = (address: string, target = 'sshd-sync'): Change => ({ target, action: 'unban', address });
const text = (batch: readonly Change[]) => batch.map(({ target, action, address }) => `${target} ${action} ${address}`);

/**
 * What the queue must do, the simple way: two Maps by "target address", bans and unbans,
 * each in the order its changes came (a change set again goes to the back).
 */
class Model {
  bans = new Map<string, Change>();
  unbans = new Map<string, Change>();
  get size(): number {
    return this.bans.size + this.unbans.size;
  }
  set(change: Change): void {
    const key = `${change.target} ${change.address}`;
    this.bans.delete(key);
    this.unbans.delete(key);
    (change.action === 'ban' ? this.bans : this.unbans).set(key, change);
  }
  take(max: number, maxUnbans: number): Change[] {
    const batch: Change[] = [];
    const takeFrom = (changes: Map<string, Change>, until: number) => {
      for (const [key, change] of changes) {
        if (batch.length >= until) return;
        changes.delete(key);
        batch.push(change);
      }
    };
    takeFrom(this.bans, max);
    takeFrom(this.unbans, Math.min(max, batch.length + maxUnbans));
    return batch;
  }
  putBack(batch: readonly Change[]): void {
    const newer = [...this.bans.values(), ...this.unbans.values()];
    this.bans = new Map();
    this.unbans = new Map();
    for (const change of batch) this.set(change);
    for (const change of newer) this.set(change);
  }
}

describe('pending changes of a sink', () => {
  it('gives bans before unbans, each in the order they came, the last change per address and target winning', () => {
    const pending = new PendingChanges();
    for (const change of [unban('10.0.0.1'), ban('10.0.0.2'), ban('10.0.0.3'), ban('10.0.0.1'), unban('10.0.0.2'), ban('10.0.0.2', 'web-sync'), ban('10.0.0.3')]) pending.set(change);
    expect(pending.size).to.equal(4);
    expect(pending.has('sshd-sync', '10.0.0.2')).to.equal(true);
    expect(pending.has('sshd-sync', '10.0.0.9')).to.equal(false);
    expect(text(pending.take(10, 10))).to.deep.equal(['sshd-sync ban 10.0.0.1', 'web-sync ban 10.0.0.2', 'sshd-sync ban 10.0.0.3', 'sshd-sync unban 10.0.0.2']);
    expect(pending.size).to.equal(0);
    expect(pending.take(10, 10)).to.deep.equal([]);
  });

  it('takes at most max changes, and at most maxUnbans unbans among them', () => {
    const pending = new PendingChanges();
    for (let i = 0; i < 5; i++) pending.set(unban(`10.0.1.${i}`));
    for (let i = 0; i < 3; i++) pending.set(ban(`10.0.2.${i}`));
    expect(text(pending.take(4, 10))).to.deep.equal(['sshd-sync ban 10.0.2.0', 'sshd-sync ban 10.0.2.1', 'sshd-sync ban 10.0.2.2', 'sshd-sync unban 10.0.1.0']);
    expect(text(pending.take(10, 2))).to.deep.equal(['sshd-sync unban 10.0.1.1', 'sshd-sync unban 10.0.1.2']);
    expect(pending.size).to.equal(2);
  });

  it('puts a failed batch back ahead of what came since, a later change for the same address winning', () => {
    const pending = new PendingChanges();
    pending.set(ban('10.0.0.1'));
    pending.set(ban('10.0.0.2'));
    const failed = pending.take(10, 10);
    pending.set(ban('10.0.0.3'));
    pending.set(unban('10.0.0.2'));
    pending.putBack(failed);
    expect(text(pending.take(10, 10))).to.deep.equal(['sshd-sync ban 10.0.0.1', 'sshd-sync ban 10.0.0.3', 'sshd-sync unban 10.0.0.2']);
  });

  it('an address flapping 100,000 times is one change, and the queue still ends as the last changes say', () => {
    const pending = new PendingChanges();
    for (let i = 0; i < 100_000; i++) {
      pending.set((i % 2 === 0 ? ban : unban)('203.0.113.7'));
      if (i % 1_000 === 0) pending.set(ban(`10.0.${i >> 16}.${(i >> 8) & 255}`));
    }
    expect(pending.size).to.equal(1 + 100);
    const batch = pending.take(1_000, 1_000);
    expect(batch).to.have.length(101);
    expect(text(batch).at(-1)).to.equal('sshd-sync unban 203.0.113.7');
  });

  for (const { addresses, takes, takeShare } of [
    { addresses: 60, takes: 30, takeShare: 0.15 },
    // Long queues: their fronts are cut off as they are taken…
    { addresses: 3_000, takes: 60, takeShare: 0.02 },
    // …and replaced changes pile up until they are compacted away.
    { addresses: 200, takes: 2_000, takeShare: 0.0005 },
  ]) {
    it(`matches the simple model over 20,000 random changes, takes and put-backs (${addresses} addresses, up to ${takes} a take)`, () => {
      let seed = 11;
      const random = () => {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const pick = (n: number) => Math.floor(random() * n);
      const pending = new PendingChanges();
      const model = new Model();
      let lastBatch: Change[] = [];
      for (let step = 0; step < 20_000; step++) {
        const roll = random();
        if (roll < 0.95 - takeShare) {
          const n = pick(addresses);
          const change = { target: `t${pick(2)}`, action: random() < 0.6 ? 'ban' : 'unban', address: `10.0.${n >> 8}.${n & 255}` } as Change;
          pending.set(change);
          model.set(change);
        } else if (roll < 0.95) {
          const [max, maxUnbans] = [1 + pick(takes), 1 + pick(takes)];
          lastBatch = pending.take(max, maxUnbans);
          expect(text(lastBatch), `take at step ${step}`).to.deep.equal(text(model.take(max, maxUnbans)));
        } else {
          pending.putBack(lastBatch);
          model.putBack(lastBatch);
          lastBatch = [];
        }
        expect(pending.size).to.equal(model.size);
      }
      expect(text(pending.take(10_000, 10_000))).to.deep.equal(text(model.take(10_000, 10_000)));
    });
  }
});
