import { closestName } from '../../../src/closest-name.js';
import { Fail2banClient } from '../../../src/fail2ban/client.js';
import type { Logger } from '../../../src/log.js';
import type { PartStatus, Problem } from '../../../src/status.js';
import type { Adoption } from '../../fleet/adoption.js';
import type { Holdings } from '../../fleet/holdings.js';
import { Projection, type Change } from '../../fleet/projection.js';
import { Batcher, sinkMeasures, sinkProblems } from '../batcher.js';
import type { PickBackend, Sink } from '../sink.js';
import { Fail2banBackend, missingSyncJailFix } from './fail2ban-backend.js';
import { SyncJailReconciler } from './sync-jail-reconciler.js';
import { waitAtMost } from '../../../src/wait-at-most.js';

/** How often fail2ban is asked whether it answers; missing sync jails and failed reconciliations are retried as often. */
const CHECK_MS = 5_000;
/** A status request takes a fresh look unless the last one is younger than this. */
const FRESH_MS = 1_000;

export interface SyncJailsOptions {
  socket: string;
  /** [jails]: primary jail -> sync jail. */
  jails: ReadonlyMap<string, string>;
  /** This host's node id: its own bans are in its primary jails already. */
  nodeId: string;
  timeoutMs: number;
  holdings: Holdings;
  adoption: Adoption;
  pick: PickBackend;
  log: Logger;
}

/**
 * The sink of the local fail2ban sync jails: a Batcher in front of fail2ban (or of the
 * dry-run backend), and the reconciler that makes the jails hold the fleet's projection.
 * One loop asks fail2ban every CHECK_MS whether it answers: when it answers (again), the
 * backlog is retried at once, every sync jail is checked and reconciled; while a sync jail
 * is missing it is looked for again. What is missing is a problem in status before any
 * change is lost to it.
 */
export class SyncJailsSink implements Sink {
  readonly projection: Projection;
  private readonly client: Fail2banClient;
  private readonly batcher: Batcher;
  private readonly reconciler: SyncJailReconciler;
  private readonly jails: string[];
  /** Why fail2ban did not answer the last check, and how many changes were applied then (one more means it answers). */
  private unreachable: { message: string; applied: number } | null = null;
  /** fail2ban answered the last check. */
  private answered = false;
  /** Sync jails fail2ban lacked at the last look. */
  private missing = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** When the last check ended. */
  private checkedAt = 0;

  constructor(private readonly options: SyncJailsOptions) {
    const { log } = options;
    this.client = new Fail2banClient(options.socket, { timeoutMs: options.timeoutMs });
    this.projection = new Projection(options.jails, options.nodeId);
    this.jails = this.projection.targets();
    // fail2ban unbans thousands a second in a jail without action, some 30 with a banaction (one
    // process each, under its global lock): a ban behind a release waits for 200 ms of unbans.
    this.batcher = new Batcher(options.pick(new Fail2banBackend(this.client, log)), log, { unbanBatchMs: 200 });
    this.reconciler = new SyncJailReconciler(this.client, options.holdings, this.projection, options.adoption, this.batcher, log);
    options.adoption.expectSyncJails(this.jails);
  }

  submit(changes: readonly Change[]): void {
    for (const change of changes) this.batcher.submit(change);
  }

  reconcile(): Promise<void> {
    return this.reconciler.run(true);
  }

  async start(): Promise<void> {
    // Not awaited: a hung fail2ban must not hold up start-up.
    this.schedule(0);
  }

  async stop(deadlineMs: number): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    this.stopped = true;
    clearTimeout(this.timer);
    this.reconciler.stop();
    // A check waits on fail2ban as long as the client's timeout (a minute): not past the deadline.
    if (this.running) await waitAtMost(this.running, deadlineMs);
    if (!(await this.batcher.stop(Math.max(0, deadline - Date.now())))) {
      this.options.log.error({ sink: 'fail2ban', backlog: this.batcher.stats().backlog }, 'stopped before every accepted change was applied');
    }
    await this.client.close(Math.max(0, deadline - Date.now()));
  }

  status(): PartStatus {
    const stats = this.batcher.stats();
    const startIt = `start fail2ban ("systemctl start fail2ban"), or set fail2ban_socket to where it listens (now ${this.options.socket})`;
    const problems: Problem[] = sinkProblems(stats, startIt);
    if (this.unreachable && !stats.lastError && stats.applied === this.unreachable.applied) {
      problems.unshift({ what: `fail2ban is not reachable: ${this.unreachable.message}`, fix: startIt });
    }
    const reconcile = this.reconciler.status();
    if (reconcile && !reconcile.ok && problems.length === 0) {
      problems.push({ what: `reconciling the sync jails failed: ${reconcile.error}`, fix: `check that fail2ban answers "fail2ban-client get <sync jail> banned" for each sync jail (see fail2ban's log); it is retried every ${CHECK_MS / 1000} s` });
    }
    return {
      kind: 'sink',
      name: 'fail2ban',
      problems,
      measures: {
        ...sinkMeasures(stats),
        ...(reconcile
          ? {
              reconcile_added: { help: 'missing bans the last reconciliation queued, by sync jail', type: 'gauge', label: 'target', values: reconcile.added },
              reconcile_removed: { help: 'released bans the last reconciliation queued for removal, by sync jail', type: 'gauge', label: 'target', values: reconcile.removed },
            }
          : {}),
      },
      details: {
        socket: this.options.socket,
        sync_jails: this.jails.join(' '),
        ...(reconcile ? { last_reconcile: { time: reconcile.at }, last_reconcile_ok: reconcile.ok, adopted: reconcile.adopted } : {}),
      },
    };
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.checkNow(), delayMs);
    this.timer.unref();
  }

  private checkNow(): void {
    this.running = this.check().finally(() => {
      this.running = undefined;
      this.checkedAt = Date.now();
      this.schedule(CHECK_MS);
    });
  }

  /** Says what is wrong on the fail2ban side, and reconciles; the sink keeps retrying either way. */
  private async check(): Promise<void> {
    const { log } = this.options;
    try {
      await this.client.ping();
      const back = !this.answered;
      this.answered = true;
      if (this.unreachable) log.info({ socket: this.options.socket }, 'fail2ban answers again');
      this.unreachable = null;
      if (back) this.batcher.retryNow();
      if (back || this.hasJailProblems()) await this.findMissingJails();
      if (!this.stopped) await this.reconciler.run(back);
    } catch (error) {
      const message = (error as Error).message;
      if (this.unreachable === null) log.warn({ socket: this.options.socket }, `fail2ban is not reachable: ${message}; events will be queued and retried`);
      this.unreachable = { message, applied: this.batcher.stats().applied };
      this.answered = false;
    }
  }

  /**
   * A status request's fresh look: the loop's check, now (whether fail2ban answers, which sync
   * jails it lacks). A check under way is waited for; another is taken after it unless all was
   * well and the last ended less than FRESH_MS ago. While something is wrong every status looks
   * again: that is when an admin fixes it and asks at once.
   */
  async refresh(): Promise<void> {
    if (this.running) await this.running;
    if (this.stopped || this.running) return this.running;
    if (this.answered && !this.hasJailProblems() && Date.now() - this.checkedAt < FRESH_MS) return;
    clearTimeout(this.timer);
    this.checkNow();
    await this.running;
  }

  /** A sync jail fail2ban lacked at the last look, or refused a change to. */
  private hasJailProblems(): boolean {
    return this.missing > 0 || Object.keys(this.batcher.stats().targetProblems).length > 0;
  }

  private async findMissingJails(): Promise<void> {
    let missing = 0;
    let running: string[] | undefined;
    for (const jail of this.jails) {
      const exists = await this.client.jailExists(jail);
      if (this.stopped) return;
      running ??= exists ? undefined : await this.client.jails().catch(() => []);
      const problem = exists ? null : this.missingJail(jail, running ?? []);
      if (problem && !this.batcher.stats().targetProblems[jail]) this.options.log.warn({ jail }, `${problem.what}; fix: ${problem.fix}`);
      if (problem) missing += 1;
      this.batcher.noteTargetProblem(jail, problem);
    }
    this.missing = missing;
  }

  /** A sync jail fail2ban lacks; a running jail whose name is close is the likely meaning of [jails] (`sshd = sshd-snyc`). */
  private missingJail(jail: string, running: readonly string[]): Problem {
    const what = `sync jail ${jail} does not exist in fail2ban: bans from other hosts cannot be applied`;
    const meant = closestName(jail, running);
    if (meant === undefined) return { what, fix: missingSyncJailFix(jail) };
    const primaries = [...this.options.jails].filter(([, sync]) => sync === jail).map(([primary]) => primary);
    return {
      what: `${what}; did you mean ${meant}?`,
      fix: `correct [jails] in the config to ${primaries.map((primary) => `"${primary} = ${meant}"`).join(', ')}, then "systemctl reload syncfail2ban"; or ${missingSyncJailFix(jail)}`,
    };
  }
}
