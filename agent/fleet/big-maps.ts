/** Entries a segment takes before the next one starts, and a ShardedMap before it splits: the most any one rebuild of a table touches. */
const SEGMENT_ENTRIES = 8_192;
/** Parts of a ShardedMap, by a hash of the key: 2,000,000 keys make 31,250 a part. */
const SHARDS = 64;

/**
 * A Map for 100,000s of string keys whose order does not matter, that never stalls the event
 * loop for long. V8 rebuilds a Map's hash table whole, at once, when it grows or shrinks past
 * a power of two: 60 ms and more for a table of 131,072 entries. Here the entries are split
 * among SHARDS Maps by a hash of the key (once there are more than SEGMENT_ENTRIES; a small
 * one is one Map), so a rebuild touches a part of them. Iteration goes part after part (each
 * in insertion order), live as a Map's within a part; an iterator begun before the split goes
 * on over the entries of that moment.
 */
export class ShardedMap<V> {
  private single: Map<string, V> | undefined = new Map();
  private shards: Array<Map<string, V>> = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(key: string): boolean {
    return this.part(key).has(key);
  }

  get(key: string): V | undefined {
    return this.part(key).get(key);
  }

  set(key: string, value: V): this {
    const part = this.part(key);
    // Whether the key is new, from the size: one look into the table, not two.
    const size = part.size;
    part.set(key, value);
    if (part.size === size) return this;
    this.count += 1;
    if (this.single && this.count > SEGMENT_ENTRIES) {
      this.shards = Array.from({ length: SHARDS }, () => new Map());
      for (const [known, held] of this.single) this.shards[shard(known)]!.set(known, held);
      this.single = undefined;
    }
    return this;
  }

  delete(key: string): boolean {
    if (!this.part(key).delete(key)) return false;
    this.count -= 1;
    return true;
  }

  *entries(): IterableIterator<[string, V]> {
    if (this.single) yield* this.single;
    else for (const part of this.shards) yield* part;
  }

  *keys(): IterableIterator<string> {
    if (this.single) yield* this.single.keys();
    else for (const part of this.shards) yield* part.keys();
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }

  /** Forgets about `count` of the oldest: the oldest of each part, in proportion to its size. */
  forgetOldest(count: number): void {
    const total = Math.max(this.count, 1);
    for (const part of this.single ? [this.single] : this.shards) {
      let forget = Math.ceil((count * part.size) / total);
      for (const key of part.keys()) {
        if (forget-- <= 0) break;
        part.delete(key);
        this.count -= 1;
      }
    }
  }

  private part(key: string): Map<string, V> {
    return this.single ?? this.shards[shard(key)]!;
  }
}

interface Segment<V> {
  readonly entries: Map<string, V>;
  /** Keys it took (it takes SEGMENT_ENTRIES, then the next segment does). */
  taken: number;
  prev: Segment<V> | undefined;
  /** Kept when the segment is unlinked, so that an iterator in it goes on to the segments after it. */
  next: Segment<V> | undefined;
}

/**
 * A ShardedMap that keeps a Map's order: for 100,000s of string keys whose order matters (the
 * oldest first). The entries are kept in segments of at most SEGMENT_ENTRIES, in the order
 * they came (the last segment takes new keys), with an index from key to segment (a
 * ShardedMap): no table is larger than a segment or a part of the index. It keeps a Map's
 * semantics: insertion order (a key set again keeps its place), and live iterators (they skip
 * what is deleted after they start and see what is added). A small one is one segment
 * without an index; the index costs about 2.6 MB of heap per 100,000 keys beyond that.
 */
export class SegmentedMap<V> {
  private head: Segment<V> = segment(undefined);
  private tail: Segment<V> = this.head;
  /** key -> its segment; undefined while there is only one segment. */
  private index: ShardedMap<Segment<V>> | undefined;
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(key: string): boolean {
    return this.index ? this.index.has(key) : this.head.entries.has(key);
  }

  get(key: string): V | undefined {
    return this.index ? this.index.get(key)?.entries.get(key) : this.head.entries.get(key);
  }

  set(key: string, value: V): this {
    if (!this.index) {
      const { entries } = this.head;
      if (entries.has(key)) {
        entries.set(key, value);
        return this;
      }
      if (this.head.taken < SEGMENT_ENTRIES) {
        entries.set(key, value);
        this.head.taken += 1;
        this.count += 1;
        return this;
      }
      this.index = new ShardedMap();
      for (const known of entries.keys()) this.index.set(known, this.head);
    }
    const current = this.index.get(key);
    if (!current) return this.setNew(key, value);
    current.entries.set(key, value);
    return this;
  }

  /** set() of a key the caller knows is not in the map: no look into the index first. */
  setNew(key: string, value: V): this {
    if (!this.index) return this.set(key, value);
    if (this.tail.taken >= SEGMENT_ENTRIES) this.tail = this.tail.next = segment(this.tail);
    this.tail.entries.set(key, value);
    this.tail.taken += 1;
    this.index.set(key, this.tail);
    this.count += 1;
    return this;
  }

  delete(key: string): boolean {
    if (!this.index) {
      if (!this.head.entries.delete(key)) return false;
      this.count -= 1;
      return true;
    }
    const holder = this.index.get(key);
    if (!holder) return false;
    this.index.delete(key);
    holder.entries.delete(key);
    this.count -= 1;
    if (holder.entries.size === 0 && holder !== this.tail) this.unlink(holder);
    if (this.count === 0) {
      // Empty again: one segment, no index, as when new (iterators in it see what comes next).
      this.index = undefined;
      this.tail.taken = 0;
    }
    return true;
  }

  /** Entries in the order their keys were first set; live, as a Map's. */
  *entries(): IterableIterator<[string, V]> {
    for (let at: Segment<V> | undefined = this.head; at; at = at.next) yield* at.entries;
  }

  *keys(): IterableIterator<string> {
    for (let at: Segment<V> | undefined = this.head; at; at = at.next) yield* at.entries.keys();
  }

  *values(): IterableIterator<V> {
    for (let at: Segment<V> | undefined = this.head; at; at = at.next) yield* at.entries.values();
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }

  /** Takes an empty segment out of the chain (never the last: new keys go there). */
  private unlink(empty: Segment<V>): void {
    const { prev, next } = empty;
    if (prev) prev.next = next;
    else this.head = next!;
    next!.prev = prev;
  }
}

/** A SegmentedMap's read side, for what hands one out. */
export type ReadonlySegmentedMap<V> = Pick<SegmentedMap<V>, 'size' | 'has' | 'get' | 'entries' | 'keys' | 'values' | typeof Symbol.iterator>;

/** A Set of 100,000s of strings whose order does not matter, on a ShardedMap. */
export class ShardedSet {
  private readonly map = new ShardedMap<true>();

  get size(): number {
    return this.map.size;
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  add(key: string): this {
    this.map.set(key, true);
    return this;
  }

  delete(key: string): boolean {
    return this.map.delete(key);
  }

  keys(): IterableIterator<string> {
    return this.map.keys();
  }

  [Symbol.iterator](): IterableIterator<string> {
    return this.map.keys();
  }

  /** See ShardedMap.forgetOldest. */
  forgetOldest(count: number): void {
    this.map.forgetOldest(count);
  }
}

export type ReadonlyShardedSet = Pick<ShardedSet, 'size' | 'has' | 'keys' | typeof Symbol.iterator>;

function segment<V>(prev: Segment<V> | undefined): Segment<V> {
  return { entries: new Map(), taken: 0, prev, next: undefined };
}

/** The key shard() saw last, and its part: an address of a snapshot goes through a dozen of these maps in a row. */
let lastKey: string | undefined;
let lastPart = 0;

/** The key's part of a ShardedMap: a 32-bit FNV-1a hash of its characters, folded. */
function shard(key: string): number {
  if (key === lastKey) return lastPart;
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  lastKey = key;
  lastPart = (hash ^ (hash >>> 16)) & (SHARDS - 1);
  return lastPart;
}
