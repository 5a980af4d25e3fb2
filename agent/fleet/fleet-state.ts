import type { SyncEvent } from '../../src/event.js';
import { ConfigError } from '../../src/config-reader.js';
import type { Logger } from '../../src/log.js';
import type { SnapshotPart } from '../../src/snapshot.js';
import type { EventTarget, RouteResult } from '../intake/intake.js';
import { LogThrottle } from '../../src/log-throttle.js';
import { HoldingsFile, type Change, type LoadResult } from './holdings-file.js';
import { ADOPTED, MANUAL, type Holdings, MAX_HOLDINGS, MAX_ORIGINS_PER_ADDRESS } from './holdings.js';
import type { Change as SinkChange, Follower } from './projection.js';
import { SnapshotReceiver, type SnapshotResult } from './snapshot-receiver.js';

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
  lastError: string | null;
}

/**
 * The fleet state: the holdings store and the sinks that follow it. Every change of a
 * holding goes through here: it is journalled first, then each sink whose target changes
 * (gains its first or loses its last holding of the address) is told.
 */
export class FleetState implements EventTarget {
  private readonly file: HoldingsFile;
  private readonly snapshots: SnapshotReceiver;
  private readonly throttle = new LogThrottle();
  private unbansWithoutHolding = 0;
  private refusedAtCap = 0;

  constructor(
    readonly holdings: Holdings,
    stateDir: string,
    private readonly followers: readonly Follower[],
    private readonly log: Logger,
    snapshotDeadlineMs?: number,
  ) {
    this.file = new HoldingsFile(stateDir, holdings);
    this.snapshots = new SnapshotReceiver(this, log, snapshotDeadlineMs);
  }

  /** Loads the store from state_dir; call before any event is taken. Throws a ConfigError when state_dir cannot be used. */
  load(): LoadResult {
    let result: LoadResult;
    try {
      result = this.file.load();
    } catch (error) {
      throw new ConfigError(
        `state_dir: cannot keep the holdings store in ${this.file.dir} (${(error as Error).message}); fix: set state_dir to a directory this user may create and write (default /var/lib/syncfail2ban)`,
      );
    }
    if (result.skipped > 0) this.log.warn({ skipped: result.skipped, stateDir: this.file.dir }, `skipped ${result.skipped} invalid line(s) of the holdings store (a line torn by a crash is expected once)`);
    this.log.info({ holdings: this.holdings.size, stateDir: this.file.dir, fresh: result.fresh }, `holdings store loaded: ${this.holdings.size} holding(s)`);
    return result;
  }

  /** Ends the snapshots being received and writes the store to disk. */
  async close(): Promise<void> {
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
      this.change(jail, [address], () => this.add(origin, jail, address));
      return 'queued';
    }
    const removed = this.change(jail, [address], () => {
      const holders = event.origin === undefined ? this.holdings.origins(jail, address) : [origin, ADOPTED];
      return holders.filter((holder) => this.holdings.remove(holder, jail, address)).map((holder): Change => ['-', holder, jail, address]);
    });
    if (removed === 0) {
      this.unbansWithoutHolding += 1;
      this.log.debug({ jail, address, origin }, `unban of ${address} from ${origin}, which holds no ban of it in ${jail}: nothing changed`);
    }
    return 'queued';
  }

  /** Adds holdings of one origin in one jail (a snapshot part, or adoption); returns how many were new. */
  addAll(origin: string, jail: string, addresses: readonly string[]): number {
    return this.change(jail, addresses, () => addresses.flatMap((address) => this.add(origin, jail, address)));
  }

  /** Releases the origin's holdings in the jail that are not in `keep` (a complete snapshot); returns how many. */
  releaseAllBut(origin: string, jail: string, keep: ReadonlySet<string>): number {
    const gone = this.holdings.heldBy(origin, jail).filter((address) => !keep.has(address));
    return this.change(jail, gone, () => gone.filter((address) => this.holdings.remove(origin, jail, address)).map((address): Change => ['-', origin, jail, address]));
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
      lastError: this.file.error,
    };
  }

  private add(origin: string, jail: string, address: string): Change[] {
    const result = this.holdings.add(origin, jail, address);
    if (result === 'added') return [['+', origin, jail, address]];
    if (result === 'full' || result === 'crowded') this.refuseAtCap(result, origin, jail, address);
    return [];
  }

  /**
   * Runs `mutate` on the holdings of `addresses` in `jail`, journals its changes, then hands
   * each sink every target that gained or lost an address. Returns the number of changes.
   */
  private change(jail: string, addresses: readonly string[], mutate: () => Change[]): number {
    const affected = this.followers.flatMap((follower) => {
      const { projection } = follower;
      const target = projection.mapping.get(jail);
      return target === undefined ? [] : [{ follower, target, before: addresses.map((address) => projection.holds(this.holdings, target, address)) }];
    });
    const changes = mutate();
    if (changes.length === 0) return 0;
    this.file.append(changes);
    for (const { follower, target, before } of affected) {
      const submitted: SinkChange[] = [];
      addresses.forEach((address, index) => {
        const after = follower.projection.holds(this.holdings, target, address);
        if (after !== before[index]) submitted.push({ target, action: after ? 'ban' : 'unban', address });
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
