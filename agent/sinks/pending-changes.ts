import { ShardedMap } from '../fleet/big-maps.js';
import type { Change } from '../fleet/projection.js';

/** Replaced changes a queue may hold beyond its live ones before it is compacted. */
const STALE_SLACK = 1_024;

/**
 * The changes waiting for a sink, the last per (target, address), bans ahead of unbans: a
 * ban protects, an unban only relieves, so the release of 300,000 queued ahead never delays
 * a new ban by more than the batch in flight. For one address only its last change is kept,
 * so the order between its ban and unban cannot be turned round.
 *
 * Per target, a table from address to its last change (split, big-maps.ts: a release
 * queues 300,000 and one Map would be rebuilt whole as it grows), and per action a queue
 * of the changes in the order they came. A change replaced by a later one for its address
 * stays in its queue, skipped when it comes up, until replaced ones outnumber the live
 * ones and the queues are compacted. A snapshot's 100,000 bans cost one table write each
 * and a look and a delete when taken, with the address as key as it came.
 */
export class PendingChanges {
  private readonly last = new Map<string, ShardedMap<Change>>();
  private bans = new ChangeQueue();
  private unbans = new ChangeQueue();
  private count = 0;
  private replaced = 0;

  get size(): number {
    return this.count;
  }

  has(target: string, address: string): boolean {
    return this.last.get(target)?.has(address) ?? false;
  }

  /** Queues the change behind the others of its kind, replacing whatever was queued for its address in its target. */
  set(change: Change): void {
    if (!this.remember(change) && ++this.replaced > this.count + STALE_SLACK) this.compact();
    (change.action === 'ban' ? this.bans : this.unbans).push(change);
  }

  /** Up to `max` changes, `maxUnbans` of them unbans at most, bans first, each in the order it was queued. */
  take(max: number, maxUnbans: number): Change[] {
    const batch: Change[] = [];
    this.takeFrom(this.bans, max, batch);
    this.takeFrom(this.unbans, Math.min(max, batch.length + maxUnbans), batch);
    return batch;
  }

  /** A failed batch goes back ahead of what was queued since, but a later change for the same address wins. */
  putBack(batch: readonly Change[]): void {
    const back = batch.filter((change) => !this.has(change.target, change.address) && this.remember(change));
    this.bans = new ChangeQueue([...back.filter((change) => change.action === 'ban'), ...this.bans.drain()]);
    this.unbans = new ChangeQueue([...back.filter((change) => change.action === 'unban'), ...this.unbans.drain()]);
  }

  /** Makes the change the last for its address in its target; true when none was queued. */
  private remember(change: Change): boolean {
    let byAddress = this.last.get(change.target);
    if (!byAddress) this.last.set(change.target, (byAddress = new ShardedMap()));
    const { size } = byAddress;
    byAddress.set(change.address, change);
    if (byAddress.size === size) return false;
    this.count += 1;
    return true;
  }

  private isLast(change: Change): boolean {
    return this.last.get(change.target)?.get(change.address) === change;
  }

  /** Moves changes off the queue's front into `batch` until it holds `until`, skipping replaced ones. */
  private takeFrom(queue: ChangeQueue, until: number, batch: Change[]): void {
    while (batch.length < until) {
      const change = queue.shift();
      if (!change) return;
      if (!this.isLast(change)) {
        this.replaced -= 1;
        continue;
      }
      const byAddress = this.last.get(change.target)!;
      byAddress.delete(change.address);
      if (byAddress.size === 0) this.last.delete(change.target);
      this.count -= 1;
      batch.push(change);
    }
  }

  /** Drops the replaced changes from both queues. */
  private compact(): void {
    this.bans = new ChangeQueue(this.bans.drain().filter((change) => this.isLast(change)));
    this.unbans = new ChangeQueue(this.unbans.drain().filter((change) => this.isLast(change)));
    this.replaced = 0;
  }
}

/** A first-in first-out array of changes that takes from its front without moving the rest each time. */
class ChangeQueue {
  private head = 0;

  constructor(private items: Array<Change | undefined> = []) {}

  push(change: Change): void {
    this.items.push(change);
  }

  shift(): Change | undefined {
    if (this.head >= this.items.length) return undefined;
    const change = this.items[this.head];
    this.items[this.head++] = undefined;
    // Once half of it is taken, the array starts again at its front.
    if (this.head >= STALE_SLACK && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return change;
  }

  /** Everything still queued, in order; the queue is left empty. */
  drain(): Change[] {
    const rest = this.items.slice(this.head) as Change[];
    this.items = [];
    this.head = 0;
    return rest;
  }
}
