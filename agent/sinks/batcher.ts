import type { Action } from '../../src/event.js';
import type { Logger } from '../../src/log.js';
import { counted, counter, gauge, type Measure, type Problem } from '../../src/status.js';
import type { Change } from '../fleet/projection.js';
import { waitAtMost } from '../../src/wait-at-most.js';
import { PendingChanges } from './pending-changes.js';

/** A change the target refused: dropped, not retried; its problem stands until a change to that target goes through. */
export interface Rejection {
  change: Change;
  problem: Problem;
}

/** Where batches go: the fail2ban sync jails, an OPNsense firewall. Throwing asks for a retry. */
export interface Backend {
  readonly name: string;
  /** Applies the batch; returns what the target refused. */
  apply(batch: Change[]): Promise<Rejection[]>;
}

export interface BatcherOptions {
  /** How long to gather changes before committing them together. */
  windowMs: number;
  maxBatch: number;
  /**
   * How long the unbans of one batch may keep the target busy, at the rate it last unbanned
   * (unset: no bound but maxBatch). A batch in flight cannot be overtaken, so this bounds how
   * long a new ban waits behind a release of many or a storm of unbans.
   */
  unbanBatchMs?: number;
  /** Distinct (target, address) pairs held at most while the backend is down. */
  maxPending: number;
  retryInitialMs: number;
  retryMaxMs: number;
  /** False when the owner logs the target's failures and recoveries itself. */
  logFailures: boolean;
}

const DEFAULT_BATCHER_OPTIONS: BatcherOptions = {
  windowMs: 25,
  maxBatch: 5_000,
  maxPending: 1_000_000,
  retryInitialMs: 250,
  retryMaxMs: 30_000,
  logFailures: true,
};

/** Unbans in a batch before the target's unban rate is known (when unbanBatchMs bounds them). */
const FIRST_UNBANS = 16;

type DropReason = 'refused' | 'queue-full' | 'shutting-down';

export interface SinkStats {
  submitted: number;
  applied: number;
  dropped: Record<DropReason, number>;
  /** target -> changes it refused */
  refused: Record<string, number>;
  failures: number;
  backlog: number;
  lastError: string | null;
  /** target -> why it refuses changes, until one goes through */
  targetProblems: Record<string, Problem>;
}

/**
 * Gathers changes for a short window and commits them as one batch; retries a failed
 * batch with capped exponential backoff. `submit` never blocks: intake goes on while the
 * backend is down. Only the last change per (target, address) is kept, which is the
 * state the target must end in; bans go ahead of unbans (see PendingChanges).
 */
export class Batcher {
  private readonly options: BatcherOptions;
  private readonly pending = new PendingChanges();
  private timer: NodeJS.Timeout | undefined;
  private wakeRetry: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private stopping = false;
  private abandoned = false;
  private readonly counts = { submitted: 0, applied: 0, failures: 0 };
  /** Changes dropped before reaching the target; those it refused are counted per target in `refused`. */
  private readonly dropped: Record<Exclude<DropReason, 'refused'>, number> = { 'queue-full': 0, 'shutting-down': 0 };
  private readonly refused = new Map<string, number>();
  private readonly targetProblems = new Map<string, Problem>();
  private lastError: string | null = null;
  private lastDropLog = 0;
  private inFlight = 0;
  /** Unbans in the next batch at most (see unbanBatchMs). */
  private unbansPerBatch: number;

  constructor(
    private readonly backend: Backend,
    private readonly log: Logger,
    options: Partial<BatcherOptions> = {},
  ) {
    this.options = { ...DEFAULT_BATCHER_OPTIONS, ...options };
    this.unbansPerBatch = this.options.unbanBatchMs === undefined ? this.options.maxBatch : Math.min(FIRST_UNBANS, this.options.maxBatch);
  }

  /** Queues a change; returns false when it was dropped because the queue is full or stopping. */
  submit(change: Change): boolean {
    if (this.stopping || (this.pending.size >= this.options.maxPending && !this.pending.has(change.target, change.address))) {
      this.dropped[this.stopping ? 'shutting-down' : 'queue-full'] += 1;
      this.logDrop(change);
      return false;
    }
    this.counts.submitted += 1;
    this.pending.set(change);
    this.schedule();
    return true;
  }

  /** Ends a backoff wait early: the owner learnt that the target answers again. */
  retryNow(): void {
    this.wakeRetry?.();
  }

  /** Notes a problem with a target before any change to it (a sync jail found missing at start). */
  noteTargetProblem(target: string, problem: Problem | null): void {
    if (problem) this.targetProblems.set(target, problem);
    else this.targetProblems.delete(target);
  }

  stats(): SinkStats {
    return {
      ...this.counts,
      dropped: { refused: [...this.refused.values()].reduce((sum, count) => sum + count, 0), ...this.dropped },
      refused: Object.fromEntries(this.refused),
      backlog: this.pending.size + this.inFlight,
      lastError: this.lastError,
      targetProblems: Object.fromEntries(this.targetProblems),
    };
  }

  /** Stops taking changes and commits what was accepted, giving up at the deadline. True when all was committed. */
  async stop(deadlineMs: number): Promise<boolean> {
    this.stopping = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.size > 0 && !this.running) this.running = this.drain();
    this.wakeRetry?.();
    if (this.running) await waitAtMost(this.running, deadlineMs);
    this.abandoned = true;
    this.wakeRetry?.();
    return this.pending.size === 0 && this.inFlight === 0;
  }

  private schedule(): void {
    if (this.running) return;
    // A full batch goes at once: waiting for the window would not make it bigger, and a burst
    // (a snapshot's parts) keeps the event loop busy long past the window, the target idle.
    if (this.pending.size >= this.options.maxBatch) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.running = this.drain();
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.drain();
    }, this.options.windowMs);
  }

  private async drain(): Promise<void> {
    let delay = this.options.retryInitialMs;
    while (this.pending.size > 0 && !this.abandoned) {
      const batch = this.pending.take(this.options.maxBatch, this.unbansPerBatch);
      this.inFlight = batch.length;
      let failure: Error | undefined;
      let rejections: Rejection[] = [];
      const started = performance.now();
      try {
        rejections = await this.backend.apply(batch);
      } catch (error) {
        failure = error as Error;
      } finally {
        this.inFlight = 0;
      }
      if (!failure) {
        this.sizeUnbans(batch, performance.now() - started);
        this.count(batch, rejections);
        delay = this.options.retryInitialMs;
        if (this.lastError && this.options.logFailures) this.log.info({ sink: this.backend.name }, 'target reachable again; backlog resumed');
        this.lastError = null;
        // Taking and encoding the next batch of thousands is a turn of its own.
        if (this.pending.size > 0) await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      this.counts.failures += 1;
      this.pending.putBack(batch);
      if (this.options.logFailures && (failure.message !== this.lastError || delay >= this.options.retryMaxMs)) {
        this.log.warn({ sink: this.backend.name, backlog: this.pending.size, retryInMs: delay }, failure.message);
      }
      this.lastError = failure.message;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wakeRetry = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeRetry = undefined;
      delay = Math.min(delay * 2, this.options.retryMaxMs);
    }
    this.running = undefined;
  }

  /** The next batch's unbans: as many as the target unbanned in unbanBatchMs this time (its bans counted as unbans' time, to be safe). */
  private sizeUnbans(batch: Change[], tookMs: number): void {
    const budget = this.options.unbanBatchMs;
    const unbans = batch.reduce((count, change) => count + (change.action === 'unban' ? 1 : 0), 0);
    if (budget === undefined || unbans === 0) return;
    this.unbansPerBatch = Math.max(1, Math.min(this.options.maxBatch, Math.floor((unbans * budget) / Math.max(tookMs, 1))));
  }

  private count(batch: Change[], rejections: Rejection[]): void {
    this.counts.applied += batch.length - rejections.length;
    const refusing = new Map(rejections.map(({ change, problem }) => [change.target, problem]));
    for (const { change } of rejections) this.refused.set(change.target, (this.refused.get(change.target) ?? 0) + 1);
    for (const { target } of batch) {
      const problem = refusing.get(target);
      if (problem) this.targetProblems.set(target, problem);
      else this.targetProblems.delete(target);
    }
  }

  private logDrop(change: Change): void {
    const now = Date.now();
    if (now - this.lastDropLog < 10_000) return;
    this.lastDropLog = now;
    const why = this.stopping ? 'shutting down' : `queue full (${this.options.maxPending} pending; is the target down?)`;
    this.log.error({ sink: this.backend.name, dropped: this.dropped['queue-full'] + this.dropped['shutting-down'], target: change.target }, `dropping ${change.action} of ${change.address}: ${why}`);
  }
}

const ADDRESSES_SHOWN = 20;

/** ` (a b c)` for a log line: the addresses when there are few, the first ADDRESSES_SHOWN and a count otherwise; '' for none. */
export function addressList(addresses: readonly string[]): string {
  if (addresses.length === 0) return '';
  const more = addresses.length > ADDRESSES_SHOWN ? ` and ${addresses.length - ADDRESSES_SHOWN} more` : '';
  return ` (${addresses.slice(0, ADDRESSES_SHOWN).join(' ')}${more})`;
}

/** A batch's changes per target, each target's addresses split by action. */
export function groupByTarget(batch: readonly Change[]): Map<string, Record<Action, string[]> & { changes: Change[] }> {
  const byTarget = new Map<string, Record<Action, string[]> & { changes: Change[] }>();
  for (const change of batch) {
    let group = byTarget.get(change.target);
    if (!group) byTarget.set(change.target, (group = { ban: [], unban: [], changes: [] }));
    group[change.action].push(change.address);
    group.changes.push(change);
  }
  return byTarget;
}

/** The measures every sink reports, and its problems: the target failing, or refusing changes. */
export function sinkMeasures(stats: SinkStats): Record<string, Measure> {
  return {
    changes_submitted: counter('changes queued for the sink', stats.submitted),
    changes_applied: counter('changes the target applied', stats.applied),
    changes_dropped: counted('changes dropped: refused by the target, queue full, or shutting down', 'reason', stats.dropped),
    changes_refused: counted('changes the target refused, by target (sync jail or alias)', 'target', stats.refused),
    failures: counter('failed attempts to apply a batch (each is retried)', stats.failures),
    backlog: gauge('changes waiting for the target', stats.backlog),
  };
}

export function sinkProblems(stats: SinkStats, failingFix: string): Problem[] {
  const problems = Object.values(stats.targetProblems);
  if (stats.lastError) problems.unshift({ what: `failing with ${stats.backlog} change(s) waiting: ${stats.lastError}`, fix: failingFix });
  return problems;
}
