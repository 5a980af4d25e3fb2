import type { Fail2banClient } from '../../../src/fail2ban/client.js';
import type { Logger } from '../../../src/log.js';
import { LogThrottle } from '../../../src/log-throttle.js';
import type { Adoption } from '../../fleet/adoption.js';
import type { Holdings } from '../../fleet/holdings.js';
import type { Projection } from '../../fleet/projection.js';
import type { Batcher } from '../batcher.js';

/** A full reconciliation also runs this often, repairing whatever else changed a sync jail. */
const RECONCILE_INTERVAL_MS = 15 * 60_000;

export interface SyncJailReconcile {
  /** When the last sync jail was reconciled (or failed to be). */
  at: string;
  /** Every sync jail's last reconciliation went through. */
  ok: boolean;
  /** sync jail -> addresses the projection wanted and the jail lacked, queued as bans. */
  added: Record<string, number>;
  /** sync jail -> addresses the store released that the jail still held, queued as unbans. */
  removed: Record<string, number>;
  /** Addresses adopted on the first start with a store (an upgrade). */
  adopted: number;
  /** Why the sync jails that failed did, one per jail. */
  error?: string;
}

/** The last reconciliation of one sync jail. */
interface TargetResult {
  at: number;
  added: number;
  removed: number;
  error?: string;
}

/**
 * Makes each sync jail hold its projection. Missing addresses are queued as bans (into the
 * sink's batcher); addresses the store released are queued as unbans; whatever else is in
 * the jail (put there by someone else) is left alone. Each sync jail is reconciled on its
 * own: one that fail2ban lacks or refuses is retried on the next `run()` while the others
 * stay done.
 *
 * On the first start with a store (an upgrade), what each sync jail holds is adopted first
 * (see Adoption), so an upgrade lifts nothing.
 */
export class SyncJailReconciler {
  private readonly results = new Map<string, TargetResult>();
  private adopted = 0;
  private stopped = false;
  private readonly throttle = new LogThrottle();

  constructor(
    private readonly client: Fail2banClient,
    private readonly holdings: Holdings,
    private readonly projection: Projection,
    private readonly adoption: Adoption,
    private readonly batcher: Batcher,
    private readonly log: Logger,
  ) {}

  /**
   * Reconciles every sync jail when `all` (fail2ban answers again), else those whose last
   * reconciliation failed or is older than RECONCILE_INTERVAL_MS. Never throws.
   */
  async run(all: boolean): Promise<void> {
    const now = Date.now();
    const due = this.projection.targets().filter((target) => {
      const last = this.results.get(target);
      return all || !last || last.error !== undefined || now - last.at >= RECONCILE_INTERVAL_MS;
    });
    for (const target of due) {
      if (this.stopped) return;
      await this.reconcile(target);
    }
  }

  /** Ends the current run() after the sync jail it is at. */
  stop(): void {
    this.stopped = true;
  }

  status(): SyncJailReconcile | null {
    if (this.results.size === 0) return null;
    const results = [...this.results];
    const failed = results.filter(([, result]) => result.error !== undefined);
    const ok = results.filter(([, result]) => result.error === undefined);
    return {
      at: new Date(Math.max(...results.map(([, result]) => result.at))).toISOString(),
      ok: failed.length === 0,
      added: Object.fromEntries(ok.map(([target, result]) => [target, result.added])),
      removed: Object.fromEntries(ok.map(([target, result]) => [target, result.removed])),
      adopted: this.adopted,
      ...(failed.length > 0 ? { error: failed.map(([target, result]) => `${target}: ${result.error}`).join('; ') } : {}),
    };
  }

  private async reconcile(target: string): Promise<void> {
    const { holdings, projection, batcher } = this;
    let present: Set<string>;
    try {
      present = new Set(await this.client.banned(target));
    } catch (error) {
      const message = (error as Error).message;
      this.results.set(target, { at: Date.now(), added: 0, removed: 0, error: message });
      const held = this.throttle.pass(target);
      if (held !== null) this.log.warn({ jail: target, err: message, held }, `reconciling sync jail ${target} failed (${message}); retried while it fails`);
      return;
    }
    if (this.stopped) return;
    const adopted = this.adoption.pendingFor(target) ? this.adoption.syncJail(projection, target, present) : 0;
    this.adopted += adopted;
    const wanted = projection.wanted(holdings, target);
    let added = 0;
    for (const address of wanted) {
      if (present.has(address)) continue;
      batcher.submit({ target, action: 'ban', address });
      added += 1;
    }
    let removed = 0;
    for (const address of projection.released(holdings, target)) {
      if (wanted.has(address)) continue;
      if (present.has(address)) {
        batcher.submit({ target, action: 'unban', address });
        removed += 1;
      } else {
        for (const jail of projection.jailsOf(target)) holdings.forgetReleased(jail, address);
      }
    }
    const before = this.results.get(target);
    this.results.set(target, { at: Date.now(), added, removed });
    if (before?.error !== undefined) this.log.info({ jail: target }, `sync jail ${target} reconciles again`);
    this.log[added + removed + adopted > 0 ? 'info' : 'debug']({ jail: target, added, removed, adopted }, `reconciled sync jail ${target}: queued ${added} missing ban(s) and ${removed} released one(s); adopted ${adopted}`);
  }
}
