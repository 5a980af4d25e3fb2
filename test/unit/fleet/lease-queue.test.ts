import { expect } from 'chai';
import { LeaseQueue } from '../../../agent/fleet/lease-queue.js';

/** A lease as the tests see it: its end, holder ("origin jail") and address. */
interface Lease {
  end: number;
  holder: string;
  address: string;
}

/** The queue over a plain map of ends, as Leases keeps them: "origin jail address" -> end. */
function queueOver(ends: Map<string, number>): LeaseQueue<string> {
  return new LeaseQueue<string>(
    (end, holder, address) => ends.get(`${holder} ${address}`) === end,
    () => ends.size,
  );
}

/** Pushes the end of "origin jail address". */
function push(queue: LeaseQueue<string>, key: string, end: number): void {
  const [origin, jail, address] = key.split(' ') as [string, string, string];
  queue.push(end, `${origin} ${jail}`, address);
}

/** Takes every lease due at `now` and releases its holding, as the fleet state does. */
function drain(queue: LeaseQueue<string>, ends: Map<string, number>, now: number): Lease[] {
  const due: Lease[] = [];
  for (let lease = queue.popDue(now); lease; lease = queue.popDue(now)) {
    due.push(lease);
    ends.delete(`${lease.holder} ${lease.address}`);
  }
  return due;
}

describe('lease queue: the holdings\' ends in order', () => {
  it('gives the leases whose end has come, earliest first, and nothing before its end', () => {
    const ends = new Map([['a sshd 203.0.113.1', 300], ['a sshd 203.0.113.2', 100], ['b web 203.0.113.3', 200]]);
    const queue = queueOver(ends);
    for (const [key, end] of ends) push(queue, key, end);
    expect(queue.next()).to.equal(100);
    expect(queue.popDue(99)).to.equal(undefined);
    expect(drain(queue, ends, 200).map((lease) => [lease.end, lease.address])).to.deep.equal([[100, '203.0.113.2'], [200, '203.0.113.3']]);
    expect(queue.next()).to.equal(300);
  });

  it('skips an entry that is no longer its holding\'s end: moved later, or the holding gone', () => {
    const ends = new Map([['a sshd 203.0.113.1', 100], ['a sshd 203.0.113.2', 150]]);
    const queue = queueOver(ends);
    push(queue, 'a sshd 203.0.113.1', 100);
    push(queue, 'a sshd 203.0.113.2', 150);
    ends.set('a sshd 203.0.113.1', 500); // a later ban moved its end
    push(queue, 'a sshd 203.0.113.1', 500);
    ends.delete('a sshd 203.0.113.2'); // unbanned
    expect(queue.next()).to.equal(500);
    expect(drain(queue, ends, 1_000).map((lease) => lease.end)).to.deep.equal([500]);
  });

  it('stays within a few times the live leases however often ends move', () => {
    const ends = new Map<string, number>();
    const queue = queueOver(ends);
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 1_000; i++) {
        const key = `a sshd 10.0.${i >> 8}.${i & 255}`;
        ends.set(key, 1_000 * round + i);
        push(queue, key, 1_000 * round + i);
      }
    }
    expect(queue.length).to.be.at.most(4 * ends.size + 2_048);
    const due = drain(queue, ends, Infinity);
    expect(due.map((lease) => lease.end)).to.deep.equal(Array.from({ length: 1_000 }, (_, i) => 49_000 + i));
  });

  it('matches a sorted list over random pushes, moves and removals', () => {
    let seed = 7;
    // mulberry32: the same sequence on every run.
    const random = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    const ends = new Map<string, number>();
    const queue = queueOver(ends);
    for (let i = 0; i < 20_000; i++) {
      const key = `o${Math.floor(random() * 5)} j 10.1.${Math.floor(random() * 20)}.${Math.floor(random() * 200)}`;
      if (random() < 0.2) ends.delete(key);
      else {
        const end = Math.floor(random() * 1_000_000);
        ends.set(key, end);
        push(queue, key, end);
      }
    }
    const expected = [...ends].map(([key, end]) => `${end} ${key}`).sort();
    const due = drain(queue, ends, Infinity);
    // Each holding comes up once, at its end, in order.
    expect(due.map((lease) => lease.end)).to.deep.equal(due.map((lease) => lease.end).sort((a, b) => a - b));
    expect(due.map((lease) => `${lease.end} ${lease.holder} ${lease.address}`).sort()).to.deep.equal(expected);
  });
});
