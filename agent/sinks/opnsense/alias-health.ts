import type { Logger } from '../../../src/log.js';
import { OpnsenseError } from './api/client.js';
import type { Rejection, SinkStats } from '../batcher.js';
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

/**
 * The health of ONE alias on one firewall: its type and verdict as last checked, its own
 * failures (not the whole firewall's), and what pf did not take. A failure is logged once
 * (with the fix) when it starts and once when it ends, and shown in status.
 */
export class AliasHealth {
  private type = '';
  private verdict: AliasVerdict | null = null;
  private failure: { message: string; key: string; during: 'write' | 'reconcile' } | null = null;
  private unaccepted: { count: number; message: string | null } = { count: 0, message: null };

  constructor(
    private readonly firewall: string,
    private readonly alias: string,
    private readonly log: Logger,
    /** Failures of the whole firewall, which the firewall's own status reports. */
    private readonly firewallWide: (error: unknown) => boolean,
  ) {}

  /** Whether the alias's type has been checked since start. */
  get judgedYet(): boolean {
    return this.verdict !== null;
  }

  /** Why nothing may be written to the alias now, or null. */
  get refusal(): string | null {
    return this.verdict?.problem ?? null;
  }

  /** The alias's type and state as read: logged when the verdict changes. True when the alias became usable again. */
  judged(type: string, verdict: AliasVerdict): boolean {
    const { log, firewall, alias } = this;
    const before = this.verdict ?? { usable: true };
    this.type = type;
    this.verdict = verdict;
    if (verdict.problem !== undefined && verdict.problem !== before.problem) {
      log.error({ firewall, alias, type }, `${verdict.problem}; its changes wait until the alias is fixed (checked at each reconciliation)`);
    }
    if (verdict.caveat !== undefined && verdict.caveat !== before.caveat) log.warn({ firewall, alias, type }, verdict.caveat);
    if (!verdict.usable || before.usable) return false;
    log.info({ firewall, alias, type }, `OPNsense ${firewall}: alias "${alias}" is usable now`);
    return true;
  }

  /** This alias failed (not the whole firewall): logged when the kind of failure changes. */
  failed(error: Error, during: 'write' | 'reconcile' = 'reconcile'): void {
    const key = error instanceof OpnsenseError ? `${error.kind}\u0000${error.endpoint}` : error.message;
    if (this.failure?.key !== key) {
      this.log.error(
        { firewall: this.firewall, alias: this.alias, ...(error instanceof OpnsenseError ? { kind: error.kind } : {}) },
        `${error.message} (alias ${this.alias} is retried on its own; the other aliases of this firewall go on)`,
      );
    }
    this.failure = { message: error.message, key, during };
  }

  /** A reconciliation of this alias went through: a failure it had found is over. */
  reconciled(): void {
    if (this.failure?.during === 'reconcile') this.recovered();
  }

  notAccepted(count: number, message: string | null): void {
    if (message !== null && this.unaccepted.count === 0) this.log.warn({ firewall: this.firewall, alias: this.alias, notAccepted: count }, message);
    this.unaccepted = { count, message };
  }

  /** Notes how a batch written to the alias went: a failure of its own, or the end of one. */
  async track(write: Promise<Rejection[]>): Promise<Rejection[]> {
    let rejections: Rejection[];
    try {
      rejections = await write;
    } catch (error) {
      // A refused alias was logged when judged; its changes wait (as backlog) until it is fixed.
      if (!this.firewallWide(error) && this.refusal === null) this.failed(error as Error, 'write');
      throw error;
    }
    if (this.failure !== null) this.recovered();
    return rejections;
  }

  /**
   * `stats`: the alias's queue; what the firewall refused of the last batch (e.g. a network
   * for a Host(s) alias) is its target problem. `note`: a problem of the alias found outside
   * the batches' changes.
   */
  status(stats: SinkStats, note: string | null): AliasStatus {
    return {
      type: this.type,
      usable: this.verdict?.usable ?? true,
      lastError: this.verdict?.problem ?? this.failure?.message ?? this.unaccepted.message ?? stats.targetProblems[this.alias]?.what ?? note,
      caveat: this.verdict?.caveat ?? null,
      backlog: stats.backlog,
      notAccepted: this.unaccepted.count,
    };
  }

  private recovered(): void {
    this.log.info({ firewall: this.firewall, alias: this.alias }, `OPNsense ${this.firewall}: alias "${this.alias}" takes changes again`);
    this.failure = null;
  }
}
