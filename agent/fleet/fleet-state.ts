import type { SyncEvent } from '../../src/event.js';
import type { Logger } from '../../src/log.js';
import type { SnapshotHeader, SnapshotPart } from '../../src/snapshot.js';
import type { Problem } from '../../src/status.js';
import { LogThrottle } from '../../src/log-throttle.js';
import { HoldingsFile, holdingsStoreError, type LoadResult } from './holdings-file.js';
import { ADOPTED, MANUAL, type Holding, type HoldingLimits, type Holdings, MAX_ORIGINS_PER_ADDRESS, type Watch } from './holdings.js';
import type { Change as SinkChange, Follower } from './projection.js';
import { SlicedReleases, type ReleaseTask } from './sliced-releases.js';
import { SnapshotReceiver, type SnapshotGauges, type SnapshotResult } from './snapshot-receiver.js';
import type { Line } from './store-lines.js';
import { UNTIL_UNBANNED } from '../../src/bantime.js';
import type { Clock } from './clock.js';

/** What the fleet state did with an event: took it, skipped it as this host's own, or has no mapping for its jail. */
export type RouteResult = 'queued' | 'own' | 'unmapped';

/** Why a ban was not taken: the origin's quota in the jail, the store full with the origin at its share, or too many holders of the address. */
export type Refusal = 'quota' | 'full' | 'crowded';

/** Why a holding went: its origin's unban, a complete snapshot without it, or its end. */
export type ReleaseCause = 'unban' | 'snapshot' | 'expiry';
/** The longest the lease timer sleeps: a clock set forward (NTP) is noticed within this. */
const LEASE_TIMER_MAX_MS = 60_000;
/** The release task of leases whose end came, among the snapshots' (whose keys are "origin jail"). */
const EXPIRY = 'expiry';

export interface FleetStatus {
  stateDir: string;
  /** Primary jail -> origin -> holdings. */
  holdings: Record<string, Record<string, number>>;
  total: number;
  limits: HoldingLimits;
  /** The origins holding the most, the largest first (named when the store is full). */
  largest: Array<[origin: string, holdings: number]>;
  /** Unbans from an origin that held nothing for the address: counted, nothing changed. */
  unbansWithoutHolding: number;
  /** Bans refused, by why. */
  refused: Record<Refusal, number>;
  /** Holdings of origins over their share dropped to make room for others' while the store was full. */
  evicted: number;
  /** Holdings complete snapshots release that are still to go (released in slices). */
  releasing: number;
  /** The last snapshot per origin and primary jail, complete or not. */
  snapshots: SnapshotResult[];
  /** Their gauges, kept as they change. */
  snapshotGauges: SnapshotGauges;
  /** This host's own snapshots (-f) as they came back to it through the broker, the one being received included: what -f asks for. */
  ownSnapshots: SnapshotResult[];
  /** What of the store is not on disk as it should be. */
  problems: Problem[];
  /** Holdings with an end (leases), and the earliest end (ms since the epoch, this host's clock). */
  leases: number;
  nextLeaseEnd: number | undefined;
  /** Holdings released, by why (evictions are counted in `evicted`). */
  released: Record<ReleaseCause, number>;
}

/** A snapshot's release: the origin's holdings in the jail that its parts did not confirm (mark below the snapshot's). */
interface SnapshotRelease extends ReleaseTask {
  id: string;
  /** What the snapshot confirmed (its mark, and how many of the origin's holdings have it). */
  kept: Watch;
}

function isSnapshotRelease(task: ReleaseTask): task is SnapshotRelease {
  return 'kept' in task;
}

/**
 * The fleet state: the holdings store and the sinks that follow it. Every change of a
 * holding goes through here, in steps: a step's changes are journalled in one write, then
 * each sink whose target changed (gained its first or lost its last holding of the address)
 * is handed those changes.
 *
 * A snapshot's parts mark what they confirm with the snapshot's number (Holdings.mark, one
 * number per snapshot, growing); once it is complete, the origin's holdings in the jail with
 * a lower mark are released. The journal says so in one line (`C`); the release itself runs
 * in slices (SlicedReleases), so 300,000 of them never stall the agent. Until a holding's
 * turn comes it is still held, as the sinks still have it; a ban of it meanwhile lifts its
 * mark to the snapshot's (and is journalled again, since the journal has released it).
 *
 * A ban with a bantime is a lease: its holding keeps the end (Holdings.leases, by this
 * host's clock), the latest end winning. One timer waits for the earliest end; the leases
 * whose end came are then released by the same slices, as their origin's unban would.
 */
export class FleetState {
  private readonly file: HoldingsFile;
  private readonly snapshots: SnapshotReceiver;
  private readonly releases: SlicedReleases;
  private readonly throttle = new LogThrottle();
  /** The current step's journal lines and, per sink, the changes it is handed after them. */
  private lines: Line[] = [];
  private readonly effects = new Map<Follower, SinkChange[]>();
  /** jail -> the sinks mapping it, with their target. */
  private readonly targets = new Map<string, Array<[Follower, string]>>();
  /** lookBefore()'s view of each target before a change, for handChanges(). */
  private readonly scratch = { before: [] as boolean[], ends: [] as Array<number | undefined> };
  private marks = 0;
  private unbansWithoutHolding = 0;
  private readonly refused: Record<Refusal, number> = { quota: 0, full: 0, crowded: 0 };
  private evicted = 0;
  private readonly released: Record<ReleaseCause, number> = { unban: 0, snapshot: 0, expiry: 0 };
  private leaseTimer: NodeJS.Timeout | undefined;
  /** When the lease timer fires (undefined: not armed). */
  private leaseTimerAt: number | undefined;
  private closed = false;
  /** This host's origin. */
  private readonly nodeId: string | undefined;
  /** This host's clock, which ends are set and kept in. */
  private readonly clock: Clock;

  constructor(
    readonly holdings: Holdings,
    stateDir: string,
    followers: readonly Follower[],
    private readonly log: Logger,
    /** `readOnly`: a dry run; the store is read from state_dir, and nothing is written there. `clock`: Date.now unless a test shifts it. */
    options: { snapshotDeadlineMs?: number; nodeId?: string; readOnly?: boolean; clock?: Clock } = {},
  ) {
    this.file = new HoldingsFile(stateDir, holdings, log, () => this.inProgress(), options.readOnly);
    this.nodeId = options.nodeId;
    this.clock = options.clock ?? Date.now;
    this.snapshots = new SnapshotReceiver(this, log, options.snapshotDeadlineMs, options.nodeId);
    this.releases = new SlicedReleases((slice) => this.step(slice));
    for (const follower of followers) {
      for (const [jail, target] of follower.projection.mapping) this.targets.set(jail, [...(this.targets.get(jail) ?? []), [follower, target]]);
    }
  }

  /** Loads the store from state_dir; call before any event is taken. Throws a ConfigError when state_dir cannot be used. */
  load(): LoadResult {
    let result: LoadResult;
    try {
      result = this.file.load();
    } catch (error) {
      throw holdingsStoreError(this.file.dir, error);
    }
    // A new snapshot's mark must be above every replayed holding's, or its release would spare them.
    this.marks = result.marks;
    if (result.skipped > 0) this.log.warn({ skipped: result.skipped, stateDir: this.file.dir }, `skipped ${result.skipped} invalid line(s) of the holdings store (a line torn by a crash is expected once)`);
    this.log.info({ holdings: this.holdings.size, leases: this.holdings.leases.size, stateDir: this.file.dir, fresh: result.fresh }, `holdings store loaded: ${this.holdings.size} holding(s)`);
    this.expireOnLoad();
    this.armLeaseTimer();
    return result;
  }

  /**
   * Ends the snapshots being received and writes the store to disk. Releases still under
   * way stop where they are: the journal has them whole (`C`), and so has the snapshot file
   * the store is compacted into, so the next start replays them; the sinks catch up at its
   * reconciliation.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.leaseTimer);
    this.releases.stop();
    this.snapshots.close();
    await this.file.close();
  }

  /**
   * A ban adds the sender's holding; an unban removes only the sender's (and an adopted one,
   * whose origin is unknown). Without an origin the event speaks for the fleet: its ban is a
   * manual holding, its unban removes every holding of the address in that jail.
   */
  apply(event: SyncEvent): RouteResult {
    const { jail, action } = event;
    const origin = event.origin ?? MANUAL;
    const taken = this.taken(origin, jail);
    if (taken !== 'queued') return taken;
    const address = event.address.text;
    if (action === 'ban') {
      // The end by this host's clock: the origin's clock may differ, the seconds left do not.
      const end = event.bantime === undefined ? undefined : this.clock() + event.bantime * 1000;
      this.step(() => this.hold(origin, jail, address, 0, true, end));
      return 'queued';
    }
    const holders = event.origin === undefined ? [...this.holdings.origins(jail, address)] : [origin, ADOPTED];
    const removed = this.step(() => holders.filter((holder) => this.drop(holder, jail, address, true)).length);
    this.released.unban += removed;
    if (removed === 0) {
      this.unbansWithoutHolding += 1;
      this.log.debug({ jail, address, origin }, `unban of ${address} from ${origin}, which holds no ban of it in ${jail}: nothing changed`);
    }
    return 'queued';
  }

  /** Adds holdings of one origin in one jail (adoption); returns how many were new. */
  addAll(origin: string, jail: string, addresses: readonly string[]): number {
    return this.step(() => addresses.filter((address) => this.hold(origin, jail, address, 0, true) === 'added').length);
  }

  /** A part is taken into the holdings; a part of this host's own snapshot that no sink takes is only noted (-f asks whether it came back whole). */
  applySnapshotPart(part: SnapshotPart): RouteResult {
    const taken = this.taken(part.origin, part.jail);
    if (taken === 'queued' || part.origin === this.nodeId) this.snapshots.take(part, taken === 'queued');
    return taken;
  }

  /** Whether a part is only noted (see applySnapshotPart), whatever its addresses. */
  onlyNotes({ origin, jail }: SnapshotHeader): boolean {
    return origin === this.nodeId && this.taken(origin, jail) !== 'queued';
  }

  /** A new snapshot from the origin in the jail: its mark, higher than every holding's until then, and the count of what it confirms. */
  beginSnapshot(origin: string, jail: string): Watch {
    return this.holdings.watch(origin, jail, ++this.marks);
  }

  /** The snapshot ended incomplete: it only added. */
  abandonSnapshot(confirmed: Watch): void {
    this.holdings.unwatch(confirmed);
  }

  /**
   * One part of snapshot `id`: each address held (added when new) and marked confirmed,
   * until `bantimes[i]` seconds from now (-1 or none: until unbanned); returns how many were
   * new and how many were refused. An address whose ban is over already is neither.
   */
  takeSnapshotPart(id: string, { origin, jail, mark }: Watch, addresses: readonly string[], bantimes?: readonly number[]): { added: number; refused: number } {
    const now = this.clock();
    return this.step(() => {
      const line: Line = ['P', origin, jail, id];
      /** end -> the addresses whose end moved to it, journalled after the part (which adds the new ones). */
      const ends: MovedEnds = new Map();
      let added = 0;
      let refused = 0;
      for (let index = 0; index < addresses.length; index++) {
        const address = addresses[index]!;
        const bantime = bantimes?.[index] ?? UNTIL_UNBANNED;
        const end = bantime === UNTIL_UNBANNED ? undefined : now + bantime * 1000;
        const result = this.hold(origin, jail, address, mark, false, end, ends);
        if (result === 'added') added += 1;
        if (result === 'added' || result === 'known') line.push(address);
        else if (result !== 'over') refused += 1;
      }
      this.lines.push(line);
      for (const [end, moved] of ends) this.lines.push(['E', origin, jail, String(end), ...moved]);
      return { added, refused };
    });
  }

  /**
   * Snapshot `id` arrived whole: the origin's holdings in the jail that it did not confirm
   * are released, in slices; `released` is told of each slice's count, `done` at the end.
   * An origin that holds nothing in the jail costs nothing.
   */
  completeSnapshot(id: string, kept: Watch, released: (count: number) => void, done: () => void): void {
    const { origin, jail, mark } = kept;
    this.step(() => this.lines.push(['C', origin, jail, id]));
    const key = `${origin} ${jail}`;
    // A newer snapshot's release covers an older one's (every mark below the older's is below its own).
    const older = this.releases.get(key) as SnapshotRelease | undefined;
    if (older) this.holdings.unwatch(older.kept);
    const held = this.holdings.heldBy(origin, jail);
    if (held.size === kept.count) {
      this.releases.delete(key);
      this.holdings.unwatch(kept);
      return done();
    }
    kept.releasing = true;
    const candidates = held.entries();
    const task: SnapshotRelease = {
      id,
      kept,
      step: () => {
        const next = candidates.next();
        if (next.done) {
          this.holdings.unwatch(kept);
          done();
          return false;
        }
        const [address, confirmed] = next.value;
        if (confirmed < mark && this.drop(origin, jail, address, false)) {
          this.released.snapshot += 1;
          released(1);
        }
        return true;
      },
    };
    this.releases.set(key, task);
  }

  /** Whether some projection takes holdings of this origin in this jail. */
  private taken(origin: string, jail: string): RouteResult {
    const mapped = this.targets.get(jail);
    if (!mapped) return 'unmapped';
    return mapped.some(([follower]) => follower.projection.counts(origin)) ? 'queued' : 'own';
  }

  status(): FleetStatus {
    let releasing = 0;
    for (const [, task] of this.releases.entries()) {
      if (!isSnapshotRelease(task)) continue;
      const { origin, jail, count } = task.kept;
      releasing += this.holdings.heldBy(origin, jail).size - count;
    }
    return {
      stateDir: this.file.dir,
      holdings: this.holdings.counts(),
      total: this.holdings.size,
      limits: this.holdings.limits,
      largest: this.holdings.largest(5),
      unbansWithoutHolding: this.unbansWithoutHolding,
      refused: { ...this.refused },
      evicted: this.evicted,
      releasing,
      snapshots: this.snapshots.status(),
      snapshotGauges: this.snapshots.gauges,
      ownSnapshots: this.snapshots.own(),
      problems: this.file.problems(),
      leases: this.holdings.leases.size,
      nextLeaseEnd: this.holdings.leases.next(),
      released: { ...this.released },
    };
  }

  /** This host's own snapshots, per jail the newest, as received back (see SnapshotReceiver.own). */
  ownSnapshots(): SnapshotResult[] {
    return this.snapshots.own();
  }

  /**
   * Runs `work` as one step: the changes it makes are journalled in one write, then each
   * sink whose target gained or lost an address is handed those changes.
   */
  private step<T>(work: () => T): T {
    const result = work();
    const { lines } = this;
    this.lines = [];
    this.file.append(lines);
    for (const [follower, changes] of this.effects) follower.submit(changes);
    this.effects.clear();
    return result;
  }

  /**
   * Adds the origin's holding, or confirms it with `mark` (a snapshot's; 0 for an event),
   * until `end` (undefined: until unbanned; a holding it has already keeps the later end).
   * `journal`: write its `+` line and its end's `E` line (a snapshot part's `P` line says the
   * holdings for all its addresses; `endMoved` gets the address under each end that moved,
   * for an `E` line after it). 'over': the ban's end has passed and the origin held nothing of it.
   */
  private hold(origin: string, jail: string, address: string, mark: number, journal: boolean, end?: number, endMoved?: MovedEnds): 'added' | 'known' | 'over' | Refusal {
    // While a complete snapshot's release is under way, what is held again must outlive it.
    const releasing = this.releases.idle ? 0 : ((this.releases.get(`${origin} ${jail}`) as SnapshotRelease | undefined)?.kept.mark ?? 0);
    const floor = Math.max(mark, releasing);
    const admission = this.holdings.admission(origin, jail, address);
    if (admission === 'known') {
      const current = this.holdings.mark(origin, jail, address)!;
      if (current < floor) {
        this.holdings.setMark(origin, jail, address, floor);
        // The journal released it already (`C`): it is held again, until its end.
        if (journal && current < releasing) {
          this.lines.push(['+', origin, jail, address]);
          const held = this.holdings.leases.end(origin, jail, address);
          if (held !== undefined) this.lines.push(['E', origin, jail, String(held), address]);
        }
      }
      this.lookBefore(jail, address);
      if (this.handChanges(jail, address, this.holdings.leases.extend(origin, jail, address, end, false))) this.endMoved(origin, jail, address, end, journal, endMoved);
      return 'known';
    }
    if (end !== undefined && end <= this.clock()) return 'over';
    if (admission === 'quota' || admission === 'full' || admission === 'crowded') {
      this.refuse(admission, origin, jail, address);
      return admission;
    }
    if (admission !== 'ok') this.evict(admission);
    this.lookBefore(jail, address);
    const held = this.holdings.add(origin, jail, address, floor) === 'added';
    const timed = held && this.holdings.leases.extend(origin, jail, address, end, true);
    this.handChanges(jail, address, held);
    if (journal) this.lines.push(['+', origin, jail, address]);
    if (timed) this.endMoved(origin, jail, address, end, journal, endMoved);
    return 'added';
  }

  /** The holding's end was set or moved: journalled (or noted in `endMoved`, for a line after the snapshot part's), and the timer told of an earlier end. */
  private endMoved(origin: string, jail: string, address: string, end: number | undefined, journal: boolean, endMoved?: MovedEnds): void {
    if (journal) this.lines.push(['E', origin, jail, String(end ?? UNTIL_UNBANNED), address]);
    else if (endMoved) {
      const key = end ?? UNTIL_UNBANNED;
      const moved = endMoved.get(key);
      if (moved) moved.push(address);
      else endMoved.set(key, [address]);
    }
    if (end !== undefined && (this.leaseTimerAt === undefined || end < this.leaseTimerAt)) this.armLeaseTimer();
  }

  /** Releases what ended while the agent was not running, before any sink projects the store (each sink's reconciliation at its start takes them out). */
  private expireOnLoad(): void {
    const lines: Line[] = [];
    const now = this.clock();
    for (let lease = this.holdings.leases.due(now); lease; lease = this.holdings.leases.due(now)) {
      const { origin, jail, address } = lease;
      if (this.holdings.remove(origin, jail, address)) lines.push(['-', origin, jail, address]);
    }
    if (lines.length === 0) return;
    this.file.append(lines);
    this.released.expiry += lines.length;
    this.log.info({ released: lines.length }, `released ${lines.length} holding(s) whose bantime ended while the agent was not running`);
  }

  /** One timer for every lease: it fires at the earliest end (or within LEASE_TIMER_MAX_MS, to notice a clock set forward). */
  private armLeaseTimer(): void {
    clearTimeout(this.leaseTimer);
    this.leaseTimer = undefined;
    this.leaseTimerAt = undefined;
    const next = this.holdings.leases.next();
    if (next === undefined || this.closed) return;
    const delay = Math.min(Math.max(next - this.clock(), 0), LEASE_TIMER_MAX_MS);
    this.leaseTimerAt = this.clock() + delay;
    this.leaseTimer = setTimeout(() => this.expire(), delay);
    this.leaseTimer.unref();
  }

  /** The leases whose end came are released in the snapshots' slices, the earliest first, each as its origin's unban would; then the timer waits for the next end. */
  private expire(): void {
    this.leaseTimer = undefined;
    this.leaseTimerAt = undefined;
    this.releases.set(EXPIRY, {
      step: () => {
        const lease = this.holdings.leases.due(this.clock());
        if (!lease) {
          this.armLeaseTimer();
          return false;
        }
        if (this.drop(lease.origin, lease.jail, lease.address, true)) this.released.expiry += 1;
        return true;
      },
    });
  }

  /** Removes the origin's holding; `journal`: write its `-` line (a release a `C` line stands for needs none). */
  private drop(origin: string, jail: string, address: string, journal: boolean): boolean {
    this.lookBefore(jail, address);
    if (!this.handChanges(jail, address, this.holdings.remove(origin, jail, address))) return false;
    if (journal) this.lines.push(['-', origin, jail, address]);
    return true;
  }

  /**
   * Before a change of one holding (or of its end) of the address in the jail: what each
   * target of the jail holds (and, for a sink that keeps ends itself, until when), for
   * handChanges after it. In two calls around the change, not one taking it as a function:
   * a snapshot changes 100,000 holdings, and a closure for each cost the agent's small young
   * generation more than the work. Never nested.
   */
  private lookBefore(jail: string, address: string): void {
    const targets = this.targets.get(jail) ?? [];
    const { before, ends } = this.scratch;
    for (let index = 0; index < targets.length; index++) {
      const [{ projection, followsEnds }, target] = targets[index]!;
      before[index] = projection.holds(this.holdings, target, address);
      ends[index] = followsEnds ? projection.end(this.holdings, target, address) : undefined;
    }
  }

  /**
   * After the change lookBefore saw the start of (`changed`: whether it changed anything):
   * each sink whose target gains or loses the address by it is handed that, at the end of the
   * step; a sink that keeps ends itself (followsEnds) is handed the ban again when the
   * target's end (Projection.end) moved later. Returns `changed`.
   */
  private handChanges(jail: string, address: string, changed: boolean): boolean {
    if (!changed) return false;
    const targets = this.targets.get(jail) ?? [];
    const { before, ends } = this.scratch;
    for (let index = 0; index < targets.length; index++) {
      const [follower, target] = targets[index]!;
      const after = follower.projection.holds(this.holdings, target, address);
      if (after !== before[index]) this.hand(follower, { target, action: after ? 'ban' : 'unban', address });
      else if (after && follower.followsEnds && later(ends[index], follower.projection.end(this.holdings, target, address))) this.hand(follower, { target, action: 'ban', address });
    }
    return true;
  }

  private hand(follower: Follower, change: SinkChange): void {
    let changes = this.effects.get(follower);
    if (!changes) this.effects.set(follower, (changes = []));
    changes.push(change);
  }

  /** The store is full: the oldest holding of the origin most over its share goes, for an origin under its share. */
  private evict(victim: Holding): void {
    this.drop(victim.origin, victim.jail, victim.address, true);
    this.evicted += 1;
    const skipped = this.throttle.pass('evicted');
    if (skipped === null) return;
    this.log.warn(
      { origin: victim.origin, jail: victim.jail, address: victim.address, evicted: this.evicted },
      `the holdings store is full (${this.holdings.limits.total}, max_holdings): the oldest holdings of ${victim.origin}, the origin most over its share, make room for other origins' bans (${victim.address} in ${victim.jail} released)`,
    );
  }

  private refuse(why: Refusal, origin: string, jail: string, address: string): void {
    this.refused[why] += 1;
    const skipped = this.throttle.pass(`${why} ${origin}`);
    if (skipped === null) return;
    const { limits } = this.holdings;
    const messages: Record<Refusal, string> = {
      quota: `${origin} holds ${limits.perOrigin} bans in ${jail}, its quota (max_holdings_per_origin): its ban of ${address} is refused, other origins' bans are not. A real host banning this many needs a larger max_holdings_per_origin on every agent; otherwise someone publishes as ${origin}`,
      full: `the holdings store is full (${limits.total}, max_holdings) and ${origin} holds its share or more: its ban of ${address} in ${jail} is refused, other origins' bans are not. Look for a flood of bans (see holdings by origin in syncfail2ban-client status), or raise max_holdings`,
      crowded: `${address} in ${jail} already has ${MAX_ORIGINS_PER_ADDRESS} holders: one more (${origin}) refused; the address stays banned through the others. Look for a client publishing under many node ids`,
    };
    this.log.error({ origin, jail, address, refused: this.refused[why], skipped }, messages[why]);
  }

  /** What the store file must say beyond the holdings for a restart to end up here: releases under way, then snapshots being received. */
  private *inProgress(): Iterable<Line> {
    for (const [, task] of this.releases.entries()) {
      if (!isSnapshotRelease(task)) continue;
      const { id, kept } = task;
      yield ['P', kept.origin, kept.jail, id, ...this.confirmed(kept)];
      yield ['C', kept.origin, kept.jail, id];
    }
    for (const { id, confirmed } of this.snapshots.receiving()) yield ['P', confirmed.origin, confirmed.jail, id, ...this.confirmed(confirmed)];
  }

  private confirmed({ origin, jail, mark, count }: Watch): string[] {
    // An empty snapshot's release (the common large one) confirms nothing: no look at the origin's holdings.
    if (count === 0) return [];
    const confirmed: string[] = [];
    for (const [address, held] of this.holdings.heldBy(origin, jail)) if (held >= mark) confirmed.push(address);
    return confirmed;
  }
}

/** end (UNTIL_UNBANNED: none) -> the addresses whose end moved to it. */
type MovedEnds = Map<number, string[]>;

/** Whether an end moved later (undefined: until unbanned, later than any end). */
function later(before: number | undefined, after: number | undefined): boolean {
  return before !== undefined && (after === undefined || after > before);
}
