import type { Action } from '../../../src/event.js';
import type { Logger } from '../../../src/log.js';
import { OpnsenseError } from './api/client.js';
import type { Change } from '../../fleet/projection.js';
import { Batcher, type BatcherOptions, type Rejection, type SinkStats } from '../batcher.js';
import type { AliasVerdict } from './alias-info.js';

export interface AliasStatus {
  /** OPNsense's type of the alias ('external', 'host', …); '' before it was read or when it cannot be. */
  type: string;
  /** False while the bridge refuses to write to it (missing, disabled, a type that keeps nothing). */
  usable: boolean;
  /** What stops this alias now, with the fix; null when it works. */
  lastError: string | null;
  /** What works with a caveat (a Host(s) alias, an external alias with expire). */
  caveat: string | null;
  backlog: number;
  /** Answered "done" by the firewall but absent from pf at the next reconciliation. */
  notAccepted: number;
}

export interface AliasQueueOptions {
  firewall: string;
  alias: string;
  /** Applies one batch of this alias's changes to the firewall (refusing it while judged unusable). */
  apply: (batch: Change[]) => Promise<Rejection[]>;
  /** Failures of the whole firewall, which the firewall's own status reports. */
  firewallWide: (error: unknown) => boolean;
  log: Logger;
  batcher: Partial<BatcherOptions>;
}

/**
 * The changes to ONE alias on one firewall and its health: its own Batcher, so that it is
 * retried on its own schedule while the other aliases go on. A failure of this alias is
 * logged once (with the fix) when it starts and once when it ends, and shown in status.
 */
export class AliasQueue {
  private readonly batcher: Batcher;
  private type = '';
  private verdict: AliasVerdict | null = null;
  private failure: { message: string; key: string; during: 'write' | 'reconcile' } | null = null;
  private unaccepted: { count: number; message: string | null } = { count: 0, message: null };

  constructor(private readonly options: AliasQueueOptions) {
    // The Batcher would log every new message and every retry at the longest backoff: this
    // class logs the alias's failures instead, once each.
    const log = options.log.child({ firewall: options.firewall, alias: options.alias });
    this.batcher = new Batcher({ name: `opnsense ${options.firewall} alias ${options.alias}`, apply: (batch) => this.apply(batch) }, log, { ...options.batcher, logFailures: false });
  }

  submit(action: Action, address: string): boolean {
    return this.batcher.submit({ target: this.options.alias, action, address });
  }

  retryNow(): void {
    this.batcher.retryNow();
  }

  stats(): SinkStats {
    return this.batcher.stats();
  }

  stop(deadlineMs: number): Promise<boolean> {
    return this.batcher.stop(deadlineMs);
  }

  /** Whether the alias's type has been checked since start. */
  get judgedYet(): boolean {
    return this.verdict !== null;
  }

  /** Why nothing may be written to the alias now, or null. */
  get refusal(): string | null {
    return this.verdict?.problem ?? null;
  }

  /** The alias's type and state as read at a reconciliation: logged when the verdict changes. */
  judged(type: string, verdict: AliasVerdict): void {
    const { log, firewall, alias } = this.options;
    const before = this.verdict ?? { usable: true };
    this.type = type;
    this.verdict = verdict;
    if (verdict.problem !== undefined && verdict.problem !== before.problem) {
      log.error({ firewall, alias, type }, `${verdict.problem}; its changes wait until the alias is fixed (checked at each reconciliation)`);
    }
    if (verdict.caveat !== undefined && verdict.caveat !== before.caveat) log.warn({ firewall, alias, type }, verdict.caveat);
    if (verdict.usable && !before.usable) {
      log.info({ firewall, alias, type }, `OPNsense ${firewall}: alias "${alias}" is usable now`);
      this.batcher.retryNow();
    }
  }

  /** This alias failed (not the whole firewall): logged when the kind of failure changes. */
  failed(error: Error, during: 'write' | 'reconcile' = 'reconcile'): void {
    const key = error instanceof OpnsenseError ? `${error.kind}\u0000${error.endpoint}` : error.message;
    if (this.failure?.key !== key) {
      this.options.log.error(
        { firewall: this.options.firewall, alias: this.options.alias, ...(error instanceof OpnsenseError ? { kind: error.kind } : {}) },
        `${error.message} (alias ${this.options.alias} is retried on its own; the other aliases of this firewall go on)`,
      );
    }
    this.failure = { message: error.message, key, during };
  }

  /** A reconciliation of this alias went through: a failure it had found is over. */
  reconciled(): void {
    if (this.failure?.during === 'reconcile') this.recovered();
  }

  notAccepted(count: number, message: string | null): void {
    if (message !== null && this.unaccepted.count === 0) this.options.log.warn({ firewall: this.options.firewall, alias: this.options.alias, notAccepted: count }, message);
    this.unaccepted = { count, message };
  }

  /**
   * What the firewall refused of the last batch (e.g. a network for a Host(s) alias) is the
   * Batcher's target problem; `note`: a problem of the alias found outside the batches' changes.
   */
  status(note: string | null): AliasStatus {
    const { backlog, targetProblems } = this.batcher.stats();
    return {
      type: this.type,
      usable: this.verdict?.usable ?? true,
      lastError: this.verdict?.problem ?? this.failure?.message ?? this.unaccepted.message ?? targetProblems[this.options.alias]?.what ?? note,
      caveat: this.verdict?.caveat ?? null,
      backlog,
      notAccepted: this.unaccepted.count,
    };
  }

  private async apply(batch: Change[]): Promise<Rejection[]> {
    let rejections: Rejection[];
    try {
      rejections = await this.options.apply(batch);
    } catch (error) {
      // A refused alias was logged when judged; its changes wait (as backlog) until it is fixed.
      if (!this.options.firewallWide(error) && this.refusal === null) this.failed(error as Error, 'write');
      throw error;
    }
    if (this.failure !== null) this.recovered();
    return rejections;
  }

  private recovered(): void {
    this.options.log.info({ firewall: this.options.firewall, alias: this.options.alias }, `OPNsense ${this.options.firewall}: alias "${this.options.alias}" takes changes again`);
    this.failure = null;
  }
}
