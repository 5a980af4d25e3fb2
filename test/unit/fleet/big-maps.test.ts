import { expect } from 'chai';
import { SegmentedMap, ShardedMap, ShardedSet } from '../../../agent/fleet/big-maps.js';

/** Enough keys for many segments and parts (8,192 each before they split). */
const MANY = 50_000;
const keys = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `k${from + i}`);

interface AnyMap {
  set(key: string, value: number): unknown;
  delete(key: string): boolean;
}

/** The same changes to a Map and to `big`: sets, sets again, deletes of whole segments (front and middle), adds. */
function mirror(big: AnyMap & { entries(): Iterable<[string, number]>; size: number }): Map<string, number> {
  const map = new Map<string, number>();
  const both = (apply: (m: AnyMap) => void) => {
    apply(big);
    apply(map);
  };
  for (const key of keys(0, MANY)) both((m) => m.set(key, 1));
  both((m) => m.set('k10', 2));
  both((m) => m.delete('k20'));
  both((m) => m.set('k20', 3));
  for (const key of [...keys(0, 9_000), ...keys(20_000, 30_000)]) both((m) => m.delete(key));
  for (const key of keys(MANY, MANY + 10_000)) both((m) => m.set(key, 4));
  expect(big.size).to.equal(map.size);
  return map;
}

describe('maps of 100,000s of keys, split so that no rebuild touches them all', () => {
  it('SegmentedMap behaves as a Map, order included: a key set again keeps its place, one deleted and set again goes last', () => {
    const big = new SegmentedMap<number>();
    const map = mirror(big);
    expect([...big.entries()]).to.deep.equal([...map.entries()]);
    expect(big.get('k9000')).to.equal(1);
    expect(big.has('k25000')).to.equal(false);
    expect(big.delete('k25000')).to.equal(false);
    for (const key of map.keys()) big.delete(key);
    expect(big.size).to.equal(0);
    expect([...big.keys()]).to.deep.equal([]);
    big.set('again', 5);
    expect([...big.entries()]).to.deep.equal([['again', 5]]);
  });

  it('SegmentedMap has live iterators, as a Map: what is deleted after they start is skipped, what is added is seen', () => {
    const big = new SegmentedMap<number>();
    for (const key of keys(0, MANY)) big.set(key, 1);
    const seen: string[] = [];
    const iterator = big.keys();
    for (let next = iterator.next(); !next.done; next = iterator.next()) {
      seen.push(next.value);
      // Deleting behind and ahead of the iterator, whole segments included; adding at the end.
      if (next.value === 'k100') for (const key of keys(0, 30_000)) if (key !== 'k100') big.delete(key);
      if (next.value === 'k40000') big.set('added', 2);
    }
    expect(seen).to.deep.equal(['k0', ...keys(1, 101), ...keys(30_000, MANY), 'added']);
  });

  it('ShardedMap holds what a Map does, in an order of its own', () => {
    const big = new ShardedMap<number>();
    const map = mirror(big);
    expect(new Map(big.entries())).to.deep.equal(map);
    expect(big.get('k9000')).to.equal(1);
    expect(big.get('k25000')).to.equal(undefined);
  });

  it('ShardedSet forgets about the oldest: none of the newest, most of the oldest', () => {
    const set = new ShardedSet();
    for (const key of keys(0, MANY)) set.add(key);
    set.forgetOldest(20_000);
    expect(set.size).to.be.within(MANY - 20_000 - 64, MANY - 20_000);
    const kept = new Set(set.keys());
    expect(keys(MANY - 25_000, MANY).every((key) => kept.has(key)), 'the newest half kept').to.equal(true);
    expect(keys(0, 15_000).filter((key) => kept.has(key)).length, 'of the oldest 15,000').to.be.below(1_000);
  });
});
