import type { Action } from '../../src/event.js';
import type { Firewall } from '../../src/config.js';
import type { Logger } from '../../src/log.js';
import { OpnsenseClient, OpnsenseError } from './opnsense/client.js';
import { counter, gauge, type PartStatus, type Problem } from '../../src/status.js';
import type { Part } from '../part.js';
import { Batcher, sinkMeasures, type BatcherOptions } from '../sinks/batcher.js';
import { DryRunBackend } from '../sinks/dry-run.js';
import { AliasInfoCache } from './alias-info.js';
import { FirewallLedger } from './ledger.js';
import { LogThrottle } from './log-throttle.js';
import { CONCURRENCY, OpnsenseBackend } from './opnsense-backend.js';
import type { StateFile } from './state-file.js';

/** Per firewall. A burst is cut into batches of this size; a failed batch is retried whole (every call is idempotent). */
export const OPNSENSE_BATCHER: Partial<BatcherOptions> = {
  windowMs: 50,
  maxBatch: 1_000,
  maxPending: 100_000,
  retryInitialMs: 500,
  retryMaxMs: 30_000,
};

/** A failed reconciliation is tried again this soon (or at the interval, if shorter). */
const RECONCILE_RETRY_MS = 10_000;
/** At stop, changes not applied by then are left to the next start's reconciliation. */
const STOP_DEADLINE_MS = 2_000;

export interface ReconcileReport {
  at: string;
  ok: boolean;
  /** Wanted addresses the aliases lacked, queued to be added again. */
  readded: number;
  /** Addresses the bridge had added that are no longer wanted, queued for removal. */
  removed: number;
  error?: string;
}

/** What the aliases should hold: the bridge's projection of the holdings. */
export interface DesiredAliases {
  addresses(alias: string): Set<string>;
  /** Who holds the address through a jail mapped to the alias, as "origin/jail". */
  holders(alias: string, address: string): string[];
}

export interface FirewallSyncOptions {
  firewall: Firewall;
  verifyTls: boolean;
  /** Content of opn_ca_file (PEM). */
  ca?: Buffer;
  killStates: boolean;
  reconcileIntervalS: number;
  /** primary jail -> alias */
  aliases: ReadonlyMap<string, string>;
  desired: DesiredAliases;
  state: Pick<StateFile, 'markDirty' | 'writeAhead'>;
  log: Logger;
  batcher?: Partial<BatcherOptions>;
  /** dry_run: changes are logged, not sent (reconciliation still reads the aliases). */
  dryRun?: boolean;
}

/**
 * Keeps the aliases of ONE firewall equal to the desired state: a Batcher with an OPNsense
 * backend applies changes as they come (retrying with backoff, never holding back the other
 * firewalls), and a periodic reconciliation lists every alias in full and queues what is
 * missing or stale, which repairs reboots, outages and dropped changes.
 */
export class FirewallSync implements Part {
  readonly url: string;
  readonly ledger: FirewallLedger;
  private readonly client: OpnsenseClient;
  private readonly aliasInfo: AliasInfoCache;
  private readonly batcher: Batcher;
  private readonly backend: OpnsenseBackend;
  private readonly throttle = new LogThrottle();
  private reachable: boolean | null = null;
  private lastError: string | null = null;
  private lastReconcile: ReconcileReport | null = null;
  private readonly reconciled = { readded: 0, removed: 0 };
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: FirewallSyncOptions) {
    const { firewall, log } = options;
    this.client = new OpnsenseClient({
      baseUrl: firewall.baseUrl,
      key: firewall.key,
      secret: firewall.secret,
      verifyTls: options.verifyTls,
      maxSockets: CONCURRENCY,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    });
    this.url = this.client.firewall;
    this.ledger = new FirewallLedger(this.url);
    this.aliasInfo = new AliasInfoCache(this.client, log);
    this.backend = new OpnsenseBackend({
      client: this.client,
      ledger: this.ledger,
      aliasInfo: this.aliasInfo,
      holders: (alias, address) => options.desired.holders(alias, address),
      state: options.state,
      killStates: options.killStates,
      log,
    });
    this.batcher = new Batcher(
      options.dryRun ? new DryRunBackend(this.backend.name, log) : { name: this.backend.name, apply: (batch) => this.observe(this.backend.apply(batch)) },
      log,
      { ...OPNSENSE_BATCHER, ...options.batcher },
    );
  }

  /** Queues a change; false when the queue is full (reconciliation re-applies it later). */
  submit(action: Action, alias: string, address: string): boolean {
    const queued = this.batcher.submit({ target: alias, action, address });
    if (!queued && !this.stopped && this.throttle.pass('overflow') !== null) {
      this.options.log.error(
        { firewall: this.url, backlog: this.batcher.stats().backlog },
        `OPNsense ${this.url} is not keeping up (its queue is full); changes stay in the desired state and reconciliation applies them once the firewall answers again: check that it is up and fast enough`,
      );
    }
    return queued;
  }

  /** Starts with a reconciliation, which also brings the aliases up to date after downtime. */
  async start(): Promise<void> {
    this.scheduleReconcile(0);
  }

  /** Applies what it can until the deadline; the rest is left to the next start's reconciliation. */
  async stop(deadlineMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const done = await this.batcher.stop(Math.min(deadlineMs, STOP_DEADLINE_MS));
    this.client.close();
    if (done) return;
    const { backlog } = this.batcher.stats();
    this.options.log.warn({ firewall: this.url, backlog }, `stopping with ${backlog} change(s) not yet applied to OPNsense ${this.url}; the next start's reconciliation applies them`);
  }

  status(): PartStatus {
    const stats = this.batcher.stats();
    const problems: Problem[] = [];
    if (this.lastError) {
      problems.push({
        what: `OPNsense ${this.url} fails with ${stats.backlog} change(s) waiting: ${this.lastError}`,
        fix: `check that the firewall answers at ${this.url} and that [opn_keys] hold a valid API key and secret for it`,
      });
    }
    const refusing = new Set(Object.keys(stats.targetProblems));
    problems.push(...Object.values(stats.targetProblems));
    for (const [alias, what] of this.backend.aliasErrors) {
      if (!refusing.has(alias)) problems.push({ what, fix: `fix alias ${alias} on the firewall (Firewall: Aliases), or map the jail to another alias in [opn_aliases]` });
    }
    const reconcile = this.lastReconcile;
    return {
      kind: 'sink',
      name: this.backend.name,
      problems,
      measures: {
        ...sinkMeasures(stats),
        reachable: gauge('1 while the last request got an answer from the firewall', this.reachable ? 1 : 0),
        reconcile_readded: counter('wanted addresses reconciliation found missing and queued again', this.reconciled.readded),
        reconcile_removed: counter('addresses no longer wanted that reconciliation queued for removal', this.reconciled.removed),
      },
      details: {
        url: this.url,
        reachable: this.reachable,
        last_reconcile: reconcile ? { time: reconcile.at } : null,
        last_reconcile_ok: reconcile?.ok ?? null,
        ...(reconcile?.error ? { last_reconcile_error: reconcile.error } : {}),
      },
    };
  }

  private scheduleReconcile(delayMs: number): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.reconcile(), delayMs);
    this.timer.unref();
  }

  private async reconcile(): Promise<void> {
    const { log, reconcileIntervalS } = this.options;
    const intervalMs = reconcileIntervalS * 1000;
    const report: ReconcileReport = { at: new Date().toISOString(), ok: true, readded: 0, removed: 0 };
    try {
      await this.observe(this.compare(report));
      this.batcher.retryNow(); // the firewall answers: do not wait out a long backoff
      log[report.readded + report.removed > 0 ? 'info' : 'debug'](
        { firewall: this.url, readded: report.readded, removed: report.removed },
        `reconciled OPNsense ${this.url}: queued ${report.readded} missing address(es) and ${report.removed} no longer wanted`,
      );
    } catch (error) {
      report.ok = false;
      report.error = (error as Error).message;
      if (this.throttle.pass(`reconcile\u0000${report.error}`) !== null) log.warn({ firewall: this.url }, `reconciliation failed: ${report.error}`);
    }
    this.lastReconcile = report;
    this.reconciled.readded += report.readded;
    this.reconciled.removed += report.removed;
    this.scheduleReconcile(report.ok ? intervalMs : Math.min(intervalMs, RECONCILE_RETRY_MS));
  }

  /** Lists every alias in full and queues what differs from the desired state. */
  private async compare(report: ReconcileReport): Promise<void> {
    const { aliases, desired } = this.options;
    this.aliasInfo.clear();
    // Aliases no longer mapped are included: what the bridge added there is no longer wanted.
    for (const alias of new Set([...aliases.values(), ...this.ledger.aliases()])) {
      const present = await this.backend.listAlias(alias);
      if (this.stopped) return;
      const wanted = desired.addresses(alias);
      for (const address of wanted) {
        if (!present.has(address) && this.submit('ban', alias, address)) report.readded += 1;
      }
      for (const address of this.ledger.addresses(alias)) {
        if (wanted.has(address)) continue;
        // Also when absent: the delete is harmless and drops the ledger entry once done.
        if (this.submit('unban', alias, address) && present.has(address)) report.removed += 1;
      }
    }
  }

  /** Tracks whether the firewall answers, for status(). */
  private async observe<T>(work: Promise<T>): Promise<T> {
    try {
      const result = await work;
      this.reachable = true;
      this.lastError = null;
      return result;
    } catch (error) {
      this.reachable = !(error instanceof OpnsenseError && error.kind === 'unreachable');
      this.lastError = (error as Error).message;
      throw error;
    }
  }
}
