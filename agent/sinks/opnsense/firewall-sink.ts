import type { Action } from '../../../src/event.js';
import type { Firewall } from '../../../src/config.js';
import type { Logger } from '../../../src/log.js';
import { LogThrottle } from '../../../src/log-throttle.js';
import { counter, gauge, type PartStatus, type Problem } from '../../../src/status.js';
import type { Holdings } from '../../fleet/holdings.js';
import type { Change, Projection } from '../../fleet/projection.js';
import { Batcher, sinkMeasures, type Backend, type BatcherOptions, type Rejection, type SinkStats } from '../batcher.js';
import type { PickBackend, Sink } from '../sink.js';
import { AliasHealth, type AliasStatus } from './alias-health.js';
import { AliasInfoCache, judgeAlias } from './alias-info.js';
import { AliasWriter, CONCURRENCY } from './alias-writer.js';
import { firewallClient, OpnsenseError, type OpnsenseClient, type TableSizes } from './api/client.js';
import { FirewallLedger } from './ledger.js';
import type { LedgerJournal } from './persisted-state.js';
import { StateKiller } from './state-killer.js';

/** Per alias on each firewall. A burst is cut into batches of this size; a failed batch is retried whole (every call is idempotent). */
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
  /** Addresses answered "done" when re-added after the last reconciliation, yet still absent: pf did not take them. */
  notAccepted: number;
  error?: string;
}

export interface FirewallStatus {
  url: string;
  /** Whether the last request got an answer from the firewall; null before the first. */
  reachable: boolean | null;
  /** The last failure that concerns the whole firewall (unreachable, credentials, …). */
  lastError: string | null;
  /** Each alias the bridge writes to on this firewall, with its own health. */
  aliases: Record<string, AliasStatus>;
  backlog: number;
  lastReconcile: ReconcileReport | null;
}

export interface FirewallSinkOptions {
  firewall: Firewall;
  verifyTls: boolean;
  /** Content of opn_ca_file (PEM). */
  ca?: Buffer;
  killStates: boolean;
  reconcileIntervalS: number;
  /** [opn_aliases] (primary jail -> alias); every origin's holdings count, this host's included. */
  projection: Projection;
  holdings: Holdings;
  /** Where the claims on what the sink adds are written ahead (the bridge's state file). */
  state: LedgerJournal;
  log: Logger;
  batcher?: Partial<BatcherOptions>;
  /** The writes to the aliases, or under dry_run the backend that logs them (reconciliation still reads the aliases). */
  pick: PickBackend;
  /** Client settings for tests (timeouts). */
  client?: { timeoutMs?: number; listTimeoutMs?: number };
}

/** Failures that concern the whole firewall rather than one alias. */
function firewallWide(error: unknown): boolean {
  if (!(error instanceof OpnsenseError)) return false;
  return error.kind === 'unreachable' || error.kind === 'auth' || error.kind === 'not_found' || error.kind === 'bad_request' || error.kind === 'bad_response' || (error.kind === 'forbidden' && error.endpoint.includes('/alias_util/'));
}

/** One alias's queue of changes (retried on its own schedule) and its health. */
interface AliasQueue {
  batcher: Batcher;
  health: AliasHealth;
}

/**
 * The sink of the aliases of ONE firewall (each firewall of opn_fw_ip is a sink of its own):
 * keeps them equal to the projection of the holdings. Each alias has its own queue (a
 * Batcher) that applies changes as they come and retries on its own schedule, so that an
 * alias that fails (a broken entry, a slow listing of a huge table) never holds back the
 * others; the AliasWriter writes them, once the alias's type was checked. A periodic
 * reconciliation checks each alias's type, lists it in full and queues what is missing or
 * stale, which repairs reboots, outages and dropped changes. What the sink added is in its
 * ledger, kept with the bridge's state (OpnsenseBridge), so that it never removes another's entry.
 */
export class FirewallSink implements Sink {
  readonly url: string;
  readonly ledger: FirewallLedger;
  readonly projection: Projection;
  private readonly client: OpnsenseClient;
  private readonly aliasInfo: AliasInfoCache;
  private readonly aliasWriter: AliasWriter;
  private readonly queues = new Map<string, AliasQueue>();
  private readonly killer: StateKiller | undefined;
  /** alias -> addresses banned by an event (not re-pushed by reconciliation) and not added yet: their states get killed. */
  private readonly fresh = new Map<string, Set<string>>();
  /** alias -> addresses re-added by a reconciliation and answered done since: absent at the next one, pf refused them. */
  private readonly repushed = new Map<string, Map<string, boolean>>();
  private readonly throttle = new LogThrottle();
  private reachable: boolean | null = null;
  private lastError: string | null = null;
  private lastErrorKey = '';
  private lastReconcile: ReconcileReport | null = null;
  private readonly reconciled = { readded: 0, removed: 0 };
  /** What each alias queue's batches go through: the backend, once the alias's type was checked. */
  private readonly writer: Backend;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: FirewallSinkOptions) {
    const { firewall, projection, holdings, log } = options;
    this.projection = projection;
    this.client = firewallClient(firewall, options, { maxSockets: CONCURRENCY, ...options.client });
    this.url = this.client.firewall;
    this.ledger = new FirewallLedger(this.url);
    this.aliasInfo = new AliasInfoCache(this.client, log);
    if (options.killStates) this.killer = new StateKiller(this.client, log);
    this.aliasWriter = new AliasWriter({
      client: this.client,
      ledger: this.ledger,
      aliasInfo: this.aliasInfo,
      holders: (alias, address) => projection.jailsOf(alias).flatMap((jail) => holdings.origins(jail, address).map((origin) => `${origin}/${jail}`)),
      state: options.state,
      onAdded: (alias, addresses) => this.added(alias, addresses),
      log,
    });
    this.writer = options.pick({ name: this.aliasWriter.name, apply: (batch) => this.observe(this.applyJudged(batch[0]!.target, batch)) });
  }

  /** Queues changes from events (what a full queue drops, reconciliation applies later). A new ban has its states killed once added. */
  submit(changes: readonly Change[]): void {
    for (const { action, target, address } of changes) {
      if (this.killer !== undefined) {
        if (action === 'ban') this.setOf(this.fresh, target).add(address);
        else this.fresh.get(target)?.delete(address);
      }
      this.queue(action, target, address);
    }
  }

  /** Starts with a reconciliation, which also checks every alias and brings it up to date after downtime. */
  async start(): Promise<void> {
    this.warnAboutTransport();
    this.scheduleReconcile(0);
  }

  /** Applies what it can until the deadline; the rest is left to the next start's reconciliation. */
  async stop(deadlineMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.killer?.stop();
    const deadline = Math.min(deadlineMs, STOP_DEADLINE_MS);
    const done = await Promise.all([...this.queues.values()].map(({ batcher }) => batcher.stop(deadline)));
    this.client.close();
    if (done.every(Boolean)) return;
    const { backlog } = this.report();
    this.options.log.warn({ firewall: this.url, backlog }, `stopping with ${backlog} change(s) not yet applied to OPNsense ${this.url}; the next start's reconciliation applies them`);
  }

  /** This firewall as a sink: its own problems and each alias's, with the counters of every alias queue. */
  status(): PartStatus {
    const report = this.report();
    const problems: Problem[] = [];
    if (report.lastError) {
      problems.push({ what: `OPNsense ${this.url}: ${report.lastError}`, fix: `check that the firewall answers at ${this.url} and that [opn_keys] hold a valid API key and secret for it` });
    }
    for (const [alias, state] of Object.entries(report.aliases)) {
      if (state.lastError) problems.push({ what: state.lastError, fix: `fix alias ${alias} on the firewall (Firewall: Aliases), or map the jail to another alias in [opn_aliases]` });
    }
    const aliases = Object.entries(report.aliases);
    const perAlias = (value: (state: AliasStatus) => number) => Object.fromEntries(aliases.map(([alias, state]) => [alias, value(state)]));
    const reconcile = report.lastReconcile;
    return {
      kind: 'sink',
      name: `opnsense ${this.url}`,
      problems,
      measures: {
        ...sinkMeasures(this.queueStats()),
        reachable: gauge('1 while the last request got an answer from the firewall', report.reachable ? 1 : 0),
        alias_failing: { help: '1 while an alias fails or is refused (missing, disabled, a type that keeps nothing)', type: 'gauge', label: 'alias', values: perAlias((state) => (state.lastError ? 1 : 0)) },
        alias_not_accepted: { help: 'addresses answered done but absent from pf at the last reconciliation (table-entries limit), by alias', type: 'gauge', label: 'alias', values: perAlias((state) => state.notAccepted) },
        reconcile_readded: counter('wanted addresses reconciliation found missing and queued again', this.reconciled.readded),
        reconcile_removed: counter('addresses no longer wanted that reconciliation queued for removal', this.reconciled.removed),
      },
      details: {
        url: this.url,
        reachable: report.reachable,
        last_reconcile: reconcile ? { time: reconcile.at } : null,
        last_reconcile_ok: reconcile?.ok ?? null,
        ...(reconcile?.error ? { last_reconcile_error: reconcile.error } : {}),
        ...Object.fromEntries(aliases.map(([alias, state]) => [`alias ${alias}`, { fields: { type: state.type || 'unknown', usable: state.usable, caveat: state.caveat } }])),
      },
    };
  }

  /** The counters of every alias queue, summed as one sink's. */
  private queueStats(): SinkStats {
    const stats = [...this.queues.values()].map(({ batcher }) => batcher.stats());
    const sum = (value: (s: SinkStats) => number) => stats.reduce((total, s) => total + value(s), 0);
    const dropped = { refused: sum((s) => s.dropped.refused), 'queue-full': sum((s) => s.dropped['queue-full']), 'shutting-down': sum((s) => s.dropped['shutting-down']) };
    const refused: Record<string, number> = {};
    for (const s of stats) for (const [target, count] of Object.entries(s.refused)) refused[target] = (refused[target] ?? 0) + count;
    return { submitted: sum((s) => s.submitted), applied: sum((s) => s.applied), dropped, refused, failures: sum((s) => s.failures), backlog: sum((s) => s.backlog), lastError: null, targetProblems: {} };
  }

  /** The firewall and each alias as typed data (url, reachability, per-alias health, the last reconciliation). */
  report(): FirewallStatus {
    const aliases: Record<string, AliasStatus> = {};
    let backlog = 0;
    for (const [alias, { batcher, health }] of this.queues) {
      const status = health.status(batcher.stats(), this.aliasInfo.bulkRefusal(alias));
      aliases[alias] = status;
      backlog += status.backlog;
    }
    return { url: this.url, reachable: this.reachable, lastError: this.lastError, aliases, backlog, lastReconcile: this.lastReconcile };
  }

  /** Queues one change; false when the alias's queue is full (reconciliation re-applies it later). */
  private queue(action: Action, alias: string, address: string): boolean {
    const { batcher } = this.queueOf(alias);
    const queued = batcher.submit({ target: alias, action, address });
    if (!queued && !this.stopped && this.throttle.pass(`overflow\u0000${alias}`) !== null) {
      this.options.log.error(
        { firewall: this.url, alias, backlog: batcher.stats().backlog },
        `OPNsense ${this.url}: alias ${alias} is not keeping up (its queue is full); changes stay in the desired state and reconciliation applies them once the alias takes changes again: check that the firewall is up and fast enough`,
      );
    }
    return queued;
  }

  private queueOf(alias: string): AliasQueue {
    let queue = this.queues.get(alias);
    if (!queue) {
      const { log } = this.options;
      const health = new AliasHealth(this.url, alias, log, firewallWide);
      // The Batcher would log every new message and every retry at the longest backoff: the
      // alias's health logs its failures instead, once each.
      const batcher = new Batcher({ name: `opnsense ${this.url} alias ${alias}`, apply: (batch) => health.track(this.writer.apply(batch)) }, log.child({ firewall: this.url, alias }), {
        ...OPNSENSE_BATCHER,
        ...this.options.batcher,
        logFailures: false,
      });
      this.queues.set(alias, (queue = { batcher, health }));
    }
    return queue;
  }

  /** Nothing is written to an alias before its type was checked, nor while it is refused. */
  private async applyJudged(alias: string, batch: Change[]): Promise<Rejection[]> {
    const queue = this.queueOf(alias);
    if (!queue.health.judgedYet) await this.judge(alias, queue);
    const refusal = queue.health.refusal;
    if (refusal !== null) throw new Error(refusal);
    return this.aliasWriter.apply(batch);
  }

  private async judge(alias: string, { batcher, health }: AliasQueue): Promise<boolean> {
    const info = await this.aliasInfo.get(alias);
    const verdict = judgeAlias(this.url, alias, info);
    if (health.judged(info.type, verdict)) batcher.retryNow();
    return verdict.usable;
  }

  private added(alias: string, addresses: string[]): void {
    const fresh = this.fresh.get(alias);
    const repushed = this.repushed.get(alias);
    const kill: string[] = [];
    for (const address of addresses) {
      if (fresh?.delete(address)) kill.push(address);
      if (repushed?.has(address)) repushed.set(address, true);
    }
    this.killer?.kill(kill);
  }

  private scheduleReconcile(delayMs: number): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.reconcile(), delayMs);
    this.timer.unref();
  }

  /** Reconciles every alias now (see compare); the next one is scheduled after it. Never throws. */
  async reconcile(): Promise<void> {
    const { log, reconcileIntervalS } = this.options;
    const intervalMs = reconcileIntervalS * 1000;
    const report: ReconcileReport = { at: new Date().toISOString(), ok: true, readded: 0, removed: 0, notAccepted: 0 };
    try {
      await this.observe(this.compare(report));
      for (const { batcher } of this.queues.values()) batcher.retryNow(); // the firewall answers: do not wait out a long backoff
      log[report.readded + report.removed > 0 ? 'info' : 'debug'](
        { firewall: this.url, readded: report.readded, removed: report.removed, notAccepted: report.notAccepted },
        `reconciled OPNsense ${this.url}: queued ${report.readded} missing address(es) and ${report.removed} no longer wanted`,
      );
    } catch (error) {
      // Already logged, once: by observe() for the firewall, by the alias's queue for an alias.
      report.ok = false;
      report.error = (error as Error).message;
    }
    this.lastReconcile = report;
    this.reconciled.readded += report.readded;
    this.reconciled.removed += report.removed;
    this.scheduleReconcile(report.ok ? intervalMs : Math.min(intervalMs, RECONCILE_RETRY_MS));
  }

  /**
   * Checks and lists every alias, each on its own: one that fails is marked in its status and
   * the others are reconciled all the same. Throws when the firewall as a whole failed.
   */
  private async compare(report: ReconcileReport): Promise<void> {
    this.aliasInfo.clear();
    // Aliases no longer mapped are included: what the bridge added there is no longer wanted.
    const names = [...new Set([...this.projection.targets(), ...this.ledger.aliases()])];
    // get_table_size answers for every table at once: read at most once per reconciliation, when needed.
    let sizes: Promise<TableSizes | null> | undefined;
    const tableSizes = () => (sizes ??= this.client.tableSizes());
    const results = await Promise.allSettled(names.map((alias) => this.compareAlias(alias, report, tableSizes)));
    const wide = results.find((result): result is PromiseRejectedResult => result.status === 'rejected' && firewallWide(result.reason));
    if (wide) throw wide.reason;
    const failed = results.filter((result) => result.status === 'rejected').length;
    if (failed > 0) throw new Error(`${failed} alias(es) could not be reconciled; see each alias's lastError`);
  }

  private async compareAlias(alias: string, report: ReconcileReport, tableSizes: () => Promise<TableSizes | null>): Promise<void> {
    const { projection, holdings } = this.options;
    if (!projection.targets().includes(alias) && (await this.aliasInfo.get(alias)).kind === 'missing') {
      this.forgetDeletedAlias(alias);
      return;
    }
    const queue = this.queueOf(alias);
    try {
      if (!(await this.judge(alias, queue))) return;
      const present = await this.aliasWriter.listAlias(alias, tableSizes);
      if (this.stopped) return;
      const wanted = projection.wanted(holdings, alias);
      const repushed = this.repushed.get(alias) ?? new Map<string, boolean>();
      const next = new Map<string, boolean>();
      let notAccepted = 0;
      for (const address of wanted) {
        if (present.has(address)) continue;
        // Answered done when re-added after the last reconciliation, and still not in pf.
        if (repushed.get(address) === true) notAccepted += 1;
        if (this.queue('ban', alias, address)) {
          report.readded += 1;
          next.set(address, false);
        }
      }
      this.repushed.set(alias, next);
      report.notAccepted += notAccepted;
      await this.noteNotAccepted(alias, queue.health, notAccepted, tableSizes);
      for (const address of this.ledger.addresses(alias)) {
        if (wanted.has(address)) continue;
        // Also when absent: the delete is harmless and drops the ledger entry once done.
        if (this.queue('unban', alias, address) && present.has(address)) report.removed += 1;
      }
      queue.health.reconciled();
    } catch (error) {
      if (!firewallWide(error)) queue.health.failed(error as Error);
      throw error;
    }
  }

  /** An alias no longer mapped was deleted on the firewall: what the bridge had added there went with it. */
  private forgetDeletedAlias(alias: string): void {
    const addresses = this.ledger.addresses(alias);
    for (const address of addresses) this.ledger.unclaim(alias, address);
    void this.queues.get(alias)?.batcher.stop(0);
    this.queues.delete(alias);
    this.options.state.markDirty();
    this.options.log.info({ firewall: this.url, alias, forgotten: addresses.size }, `OPNsense ${this.url}: alias "${alias}", no longer in [opn_aliases], was deleted on the firewall; forgot the ${addresses.size} address(es) the bridge had added there`);
  }

  /** Reports what pf did not take (its table-entries limit, shared by every table), instead of re-adding it silently forever. */
  private async noteNotAccepted(alias: string, health: AliasHealth, count: number, tableSizes: () => Promise<TableSizes | null>): Promise<void> {
    if (count === 0) {
      health.notAccepted(0, null);
      return;
    }
    let sizes = '';
    try {
      const table = await tableSizes();
      if (table !== null) sizes = ` (pf holds ${table.used} entries over all tables; its table-entries limit is ${table.limit})`;
    } catch {
      // Only for the message: without "Firewall: Aliases" it goes without the numbers.
    }
    health.notAccepted(
      count,
      `OPNsense ${this.url}: ${count} address(es) of alias "${alias}" were answered "done" but are not in pf (not accepted by pf): pf's table-entries limit, shared by all tables (GeoIP, bogons, every alias), is probably reached${sizes}. Raise "Firewall Maximum Table Entries" in Firewall: Settings: Advanced, or make the tables smaller; they are tried again at each reconciliation`,
    );
  }

  private warnAboutTransport(): void {
    const { log } = this.options;
    if (this.url.startsWith('http:')) {
      log.warn({ firewall: this.url }, `OPNsense ${this.url} is reached over plain http: its API key and secret cross the network unencrypted; write the firewall without http:// in opn_fw_ip to use https`);
    } else if (!this.options.verifyTls) {
      log.warn(
        { firewall: this.url },
        `TLS certificate of OPNsense ${this.url} is not verified (opn_verify = false): anyone on the network path can pose as the firewall and read its API key; set opn_ca_file to the firewall's certificate and opn_verify = true`,
      );
    }
  }

  private setOf(map: Map<string, Set<string>>, alias: string): Set<string> {
    let set = map.get(alias);
    if (!set) map.set(alias, (set = new Set()));
    return set;
  }

  /** Tracks whether the firewall answers, for status(); its failures are logged once each, and when they end. */
  private async observe<T>(work: Promise<T>): Promise<T> {
    try {
      const result = await work;
      this.reachable = true;
      if (this.lastError !== null) this.options.log.info({ firewall: this.url }, `OPNsense ${this.url} answers again`);
      this.lastError = null;
      return result;
    } catch (error) {
      if (firewallWide(error)) {
        const message = (error as Error).message;
        const key = error instanceof OpnsenseError ? error.kind : message;
        if (this.lastErrorKey !== key || this.lastError === null) this.options.log.error({ firewall: this.url, kind: key }, `${message} (retried with backoff)`);
        this.lastErrorKey = key;
        this.reachable = !(error instanceof OpnsenseError && error.kind === 'unreachable');
        this.lastError = message;
      } else {
        this.reachable = true;
      }
      throw error;
    }
  }
}
