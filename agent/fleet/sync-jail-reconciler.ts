import type { Fail2banClient } from '../../src/fail2ban/client.js';
import type { Logger } from '../../src/log.js';
import type { FleetState } from './fleet-state.js';
import { ADOPTED } from './holdings.js';
import { isCanonical } from '../../src/ip.js';
import type { Projection } from './projection.js';

/** How often fail2ban is asked whether it answers, to reconcile as soon as it is back. */
export const REACHABILITY_CHECK_MS = 5_000;
/** A full reconciliation also runs this often, repairing whatever else changed a sync jail. */
export const RECONCILE_INTERVAL_MS = 15 * 60_000;

export interface SyncJailReconcile {
  at: string;
  ok: boolean;
  /** sync jail -> addresses the projection wanted and the jail lacked, queued as bans. */
  added: Record<string, number>;
  /** sync jail -> addresses the store released that the jail still held, queued as unbans. */
  removed: Record<string, number>;
  /** Addresses adopted on the first start with a store (an upgrade). */
  adopted: number;
  error?: string;
}

/**
 * Makes each sync jail hold its projection: at start, whenever fail2ban answers again after
 * not answering, and every RECONCILE_INTERVAL_MS. Missing addresses are queued as bans (the
 * sink sends them in batches); addresses the store released are queued as unbans; whatever
 * else is in the jail (put there by someone else) is left alone.
 *
 * On the first start with a store (`adopt`), what the sync jails hold is adopted first, so an
 * upgrade lifts nothing.
 */
export class SyncJailReconciler {
  private last: SyncJailReconcile | null = null;
  private timer: NodeJS.Timeout | undefined;
  private reachable: boolean | null = null;
  private lastFull = 0;
  private stopped = false;
  private running: Promise<void> | undefined;
  private adopt = false;
  private onAdopted: () => void = () => undefined;

  constructor(
    private readonly client: Fail2banClient,
    private readonly fleet: FleetState,
    private readonly projection: Projection,
    private readonly log: Logger,
  ) {}

  /** `adopt`: the first start with a store; `onAdopted` is called once what the sync jails hold was taken in. */
  start(adopt: boolean, onAdopted: () => void): void {
    this.adopt = adopt;
    this.onAdopted = onAdopted;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  status(): SyncJailReconcile | null {
    return this.last;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule(REACHABILITY_CHECK_MS);
      });
    }, delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const wasReachable = this.reachable;
    try {
      await this.client.ping();
      this.reachable = true;
    } catch {
      this.reachable = false;
      return;
    }
    if (wasReachable !== true || !this.last?.ok || Date.now() - this.lastFull >= RECONCILE_INTERVAL_MS) await this.reconcile();
  }

  private async reconcile(): Promise<SyncJailReconcile> {
    const report: SyncJailReconcile = { at: new Date().toISOString(), ok: true, added: {}, removed: {}, adopted: 0 };
    const { fleet, projection } = this;
    try {
      for (const target of projection.targets()) {
        const present = new Set(await this.client.banned(target));
        if (this.stopped) break;
        if (this.adopt) report.adopted += this.adoptFrom(target, present);
        const wanted = projection.wanted(fleet.holdings, target);
        let added = 0;
        for (const address of wanted) {
          if (present.has(address)) continue;
          projection.submit('ban', target, address);
          added += 1;
        }
        let removed = 0;
        for (const address of projection.released(fleet.holdings, target)) {
          if (wanted.has(address)) continue;
          if (present.has(address)) {
            projection.submit('unban', target, address);
            removed += 1;
          } else {
            for (const jail of projection.jailsOf(target)) fleet.holdings.forgetReleased(jail, address);
          }
        }
        report.added[target] = added;
        report.removed[target] = removed;
      }
      if (this.adopt && !this.stopped) {
        this.adopt = false;
        this.onAdopted();
      }
      this.lastFull = Date.now();
    } catch (error) {
      report.ok = false;
      report.error = (error as Error).message;
    }
    this.last = report;
    const added = Object.values(report.added).reduce((sum, n) => sum + n, 0);
    const removed = Object.values(report.removed).reduce((sum, n) => sum + n, 0);
    if (!report.ok) this.log.warn({ err: report.error }, `sync jail reconciliation failed (${report.error}); retrying in ${REACHABILITY_CHECK_MS / 1000} s`);
    else this.log[added + removed + report.adopted > 0 ? 'info' : 'debug']({ added: report.added, removed: report.removed, adopted: report.adopted }, `reconciled the sync jails: queued ${added} missing ban(s) and ${removed} released one(s); adopted ${report.adopted}`);
    return report;
  }

  /** Takes what the sync jail holds into the store, as held by nobody known (see ADOPTED). */
  private adoptFrom(target: string, present: ReadonlySet<string>): number {
    const jail = this.projection.jailsOf(target)[0]!;
    // fail2ban stores any string as a ban: only canonical addresses are adopted.
    const adopted = [...present].filter((address) => isCanonical(address) && !this.projection.holds(this.fleet.holdings, target, address));
    return this.fleet.addAll(ADOPTED, jail, adopted);
  }
}
