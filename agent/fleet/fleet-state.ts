import type { SyncEvent } from '../../src/event.js';
import { ConfigError } from '../../src/config-reader.js';
import type { Logger } from '../../src/log.js';
import type { SnapshotPart } from '../../src/snapshot.js';
import type { Problem } from '../../src/status.js';
import { LogThrottle } from '../../src/log-throttle.js';
import { StateFileError } from '../state-dir/durable-file.js';
import { HoldingsFile, type Change, type LoadResult } from './holdings-file.js';
import { ADOPTED, MANUAL, type Holdings, MAX_HOLDINGS, MAX_ORIGINS_PER_ADDRESS } from './holdings.js';
import { UNTIL_UNBANNED } from '../../src/bantime.js';
import type { Change as SinkChange, Follower } from './projection.js';
import { SnapshotReceiver, type SnapshotResult } from './snapshot-receiver.js';
import type { Clock } from './clock.js';

/** Why a holding went: its origin's unban, a complete snapshot without it, or its end. */
export type ReleaseCause = 'unban' | 'snapshot' | 'expiry';
/** The longest the lease timer sleeps: a clock set forward (NTP) is noticed within this. */
const LEASE_TIMER_MAX_MS = 60_000;
/** The longest leases are released at a stretch before the event loop takes its turn. */
const EXPIRY_SLICE_MS = 10;

/** What the fleet state did with an event: took it, skipped it as this host's own, or has no mapping for its jail. */
export type RouteResult = 'queued' | 'own' | 'unmapped';

export interface FleetStatus {
  stateDir: string;
  /** Primary jail -> origin -> holdings. */
  holdings: Record<string, Record<string, number>>;
  total: number;
  /** Unbans from an origin that held nothing for the address: counted, nothing changed. */
  unbansWithoutHolding: number;
  /** Bans refused at MAX_HOLDINGS or MAX_ORIGINS_PER_ADDRESS. */
  refusedAtCap: number;
  /** The last snapshot per origin and primary jail, complete or not. */
  snapshots: SnapshotResult[];
  /** What of the store is not on disk as it should be. */
  problems: Problem[];
  /** Holdings with an end (leases), and the earliest end (ms since the epoch, this host's clock). */
  leases: number;
  nextLeaseEnd: number | undefined;
  /** Holdings released, by why. */
  released: Record<ReleaseCause, number>;
}

/**
 * The fleet state: the holdings store and the sinks that follow it. Every change of a
 * holding goes through here: it is journalled first, then each sink whose target changes
 * (gains its first or loses its last holding of the address) is told.
 */
export class FleetState {
  private readonly file: HoldingsFile;
  private readonly snapshots: SnapshotReceiver;
  private readonly throttle = new LogThrottle();
  private unbansWithoutHolding = 0;
  private refusedAtCap = 0;
  private readonly released: Record<ReleaseCause, number> = { unban: 0, snapshot: 0, expiry: 0 };
  private leaseTimer: NodeJS.Timeout | undefined;
  /** When the lease timer fires (undefined: not armed). */
  private leaseTimerAt: number | undefined;
  private expiring: NodeJS.Immediate | undefined;
  private closed = false;

  constructor(
    readonly holdings: Holdings,
    stateDir: string,
    private readonly followers: readonly Follower[],
    private readonly log: Logger,
    snapshotDeadlineMs?: number,
    private readonly clock: Clock = Date.now,
  ) {
    this.file = new HoldingsFile(stateDir, holdings, log);
    this.snapshots = new SnapshotReceiver(this, log, snapshotDeadlineMs);
  }

  /** Loads the store from state_dir; call before any event is taken. Throws a ConfigError when state_dir cannot be used. */
  load(): LoadResult {
    let result: LoadResult;
    try {
      result = this.file.load();
    } catch (error) {
      if (error instanceof StateFileError) throw new ConfigError(`state_dir: ${error.message}; fix: ${error.fix}`);
      throw new ConfigError(
        `state_dir: cannot keep the holdings store in ${this.file.dir} (${(error as Error).message}); fix: set state_dir to a directory this user may create and write (default /var/lib/syncfail2ban)`,
      );
    }
    if (result.skipped > 0) this.log.warn({ skipped: result.skipped, stateDir: this.file.dir }, `skipped ${result.skipped} invalid line(s) of the holdings store (a line torn by a crash is expected once)`);
    this.log.info({ holdings: this.holdings.size, leases: this.holdings.leases.size, stateDir: this.file.dir, fresh: result.fresh }, `holdings store loaded: ${this.holdings.size} holding(s)`);
    // Before any sink projects the store: what ended while the agent was down goes now.
    const expired = this.expire(Infinity);
    if (expired > 0) this.log.info({ released: expired }, `released ${expired} holding(s) whose bantime ended while the agent was not running`);
    this.armLeaseTimer();
    return result;
  }

  /** Ends the snapshots being received and writes the store to disk. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.leaseTimer);
    clearImmediate(this.expiring);
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
      this.change(jail, [address], () => this.add(origin, jail, address, end));
      return 'queued';
    }
    const removed = this.change(jail, [address], () => {
      const holders = event.origin === undefined ? this.holdings.origins(jail, address) : [origin, ADOPTED];
      return holders.filter((holder) => this.holdings.remove(holder, jail, address)).map((holder): Change => ['-', holder, jail, address]);
    });
    this.released.unban += removed;
    if (removed === 0) {
      this.unbansWithoutHolding += 1;
      this.log.debug({ jail, address, origin }, `unban of ${address} from ${origin}, which holds no ban of it in ${jail}: nothing changed`);
    }
    return 'queued';
  }

  /**
   * Adds holdings of one origin in one jail (a snapshot part, or adoption), each until
   * `bantimes[i]` seconds from now (-1 or none: until unbanned); returns how many were new.
   */
  addAll(origin: string, jail: string, addresses: readonly string[], bantimes?: readonly number[]): number {
    const now = this.clock();
    const ends = addresses.map((_, index) => (bantimes === undefined || bantimes[index]! < 0 ? undefined : now + bantimes[index]! * 1000));
    let added = 0;
    this.change(jail, addresses, () =>
      addresses.flatMap((address, index) => {
        const changes = this.add(origin, jail, address, ends[index]);
        if (changes[0]?.[0] === '+') added += 1;
        return changes;
      }),
    );
    return added;
  }

  /** Releases the origin's holdings in the jail that are not in `keep` (a complete snapshot); returns how many. */
  releaseAllBut(origin: string, jail: string, keep: ReadonlySet<string>): number {
    const gone = this.holdings.heldBy(origin, jail).filter((address) => !keep.has(address));
    const released = this.change(jail, gone, () => gone.filter((address) => this.holdings.remove(origin, jail, address)).map((address): Change => ['-', origin, jail, address]));
    this.released.snapshot += released;
    return released;
  }

  applySnapshotPart(part: SnapshotPart): RouteResult | 'busy' {
    const taken = this.taken(part.origin, part.jail);
    if (taken !== 'queued') return taken;
    return this.snapshots.take(part) ? 'queued' : 'busy';
  }

  /** Whether some sink takes holdings of this origin in this jail. */
  private taken(origin: string, jail: string): RouteResult {
    const mapped = this.followers.filter(({ projection }) => projection.mapping.has(jail));
    if (mapped.length === 0) return 'unmapped';
    return mapped.some(({ projection }) => projection.counts(origin)) ? 'queued' : 'own';
  }

  status(): FleetStatus {
    return {
      stateDir: this.file.dir,
      holdings: this.holdings.counts(),
      total: this.holdings.size,
      unbansWithoutHolding: this.unbansWithoutHolding,
      refusedAtCap: this.refusedAtCap,
      snapshots: this.snapshots.status(),
      problems: this.file.problems(),
      leases: this.holdings.leases.size,
      nextLeaseEnd: this.holdings.leases.next(),
      released: { ...this.released },
    };
  }

  /** Adds the origin's holding until `end` (undefined: until unbanned); a holding it has already keeps the later end. */
  private add(origin: string, jail: string, address: string, end: number | undefined): Change[] {
    const { leases } = this.holdings;
    // A ban whose end has passed holds nothing new.
    if (end !== undefined && end <= this.clock() && this.holdings.origins(jail, address).indexOf(origin) === -1) return [];
    const result = this.holdings.add(origin, jail, address);
    if (result === 'full' || result === 'crowded') {
      this.refuseAtCap(result, origin, jail, address);
      return [];
    }
    const changes: Change[] = result === 'added' ? [['+', origin, jail, address]] : [];
    if (leases.extend(origin, jail, address, end, result === 'added')) {
      changes.push(['E', origin, jail, String(end ?? UNTIL_UNBANNED), address]);
      if (end !== undefined && (this.leaseTimerAt === undefined || end < this.leaseTimerAt)) this.armLeaseTimer();
    }
    return changes;
  }

  /**
   * Releases the holdings whose end has come, the earliest first, for at most `sliceMs`;
   * returns how many. Each is released as its origin's unban would release it.
   */
  private expire(sliceMs: number): number {
    const until = performance.now() + sliceMs;
    let released = 0;
    for (let lease = this.holdings.leases.due(this.clock()); lease; lease = this.holdings.leases.due(this.clock())) {
      const { origin, jail, address } = lease;
      released += this.change(jail, [address], () => (this.holdings.remove(origin, jail, address) ? [['-', origin, jail, address]] : []));
      if (performance.now() >= until) break;
    }
    this.released.expiry += released;
    return released;
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
    this.leaseTimer = setTimeout(() => this.expireSliced(), delay);
    this.leaseTimer.unref();
  }

  /** Releases what is due in slices, a turn of the event loop between two, then waits for the next end. */
  private expireSliced(): void {
    this.expiring = undefined;
    if (this.closed) return;
    this.expire(EXPIRY_SLICE_MS);
    const next = this.holdings.leases.next();
    if (next !== undefined && next <= this.clock()) this.expiring = setImmediate(() => this.expireSliced());
    else this.armLeaseTimer();
  }

  /**
   * Runs `mutate` on the holdings of `addresses` in `jail`, journals its changes, then hands
   * each sink every target that gained or lost an address. Returns the number of changes.
   */
  private change(jail: string, addresses: readonly string[], mutate: () => Change[]): number {
    const affected = this.followers.flatMap((follower) => {
      const { projection } = follower;
      const target = projection.mapping.get(jail);
      if (target === undefined) return [];
      const before = addresses.map((address) => projection.holds(this.holdings, target, address));
      const endsBefore = follower.followsEnds ? addresses.map((address) => projection.end(this.holdings, target, address)) : undefined;
      return [{ follower, target, before, endsBefore }];
    });
    const changes = mutate();
    if (changes.length === 0) return 0;
    this.file.append(changes);
    for (const { follower, target, before, endsBefore } of affected) {
      const submitted: SinkChange[] = [];
      addresses.forEach((address, index) => {
        const after = follower.projection.holds(this.holdings, target, address);
        if (after !== before[index]) submitted.push({ target, action: after ? 'ban' : 'unban', address });
        else if (after && endsBefore && later(endsBefore[index], follower.projection.end(this.holdings, target, address))) submitted.push({ target, action: 'ban', address });
      });
      if (submitted.length > 0) follower.submit(submitted);
    }
    return changes.length;
  }

  private refuseAtCap(result: 'full' | 'crowded', origin: string, jail: string, address: string): void {
    this.refusedAtCap += 1;
    const skipped = this.throttle.pass(result);
    if (skipped === null) return;
    this.log.error(
      { origin, jail, address, refusedAtCap: this.refusedAtCap },
      result === 'full'
        ? `the holdings store is full (${MAX_HOLDINGS} holdings): ban of ${address} in ${jail} by ${origin} refused. Something bans far more than a firewall should hold: look for a flood of bans (see the peers in syncfail2ban-client status), or shorten bantime`
        : `${address} in ${jail} already has ${MAX_ORIGINS_PER_ADDRESS} holders: one more (${origin}) refused; the address stays banned through the others. Look for a client publishing under many node ids`,
    );
  }
}

/** Whether an end moved later (undefined: until unbanned, later than any end). */
function later(before: number | undefined, after: number | undefined): boolean {
  return before !== undefined && (after === undefined || after > before);
}
