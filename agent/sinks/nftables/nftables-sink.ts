import type { NftablesConfig } from '../../../src/config-nftables.js';
import type { Logger } from '../../../src/log.js';
import { LogThrottle } from '../../../src/log-throttle.js';
import { counted, type PartStatus, type Problem } from '../../../src/status.js';
import type { Holdings } from '../../fleet/holdings.js';
import { Projection, type Change } from '../../fleet/projection.js';
import { Batcher, sinkMeasures, sinkProblems } from '../batcher.js';
import type { PickBackend, Sink } from '../sink.js';
import { KernelSets, type ReconcileResult } from './kernel-sets.js';
import { Nft, NftError, type NftOptions } from './nft.js';
import { NftHelper } from './nft-helper.js';
import { TABLE } from './nft-script.js';
import { waitAtMost } from '../../../src/wait-at-most.js';

/** How often the table is looked at (without its elements): a flushed ruleset is rebuilt within this. */
const CHECK_MS = 5_000;
/**
 * Changes per nft transaction. One nft run costs about 20 ms plus 8 µs per element (measured:
 * 100,000 in 0.8 s), so large batches; a 64 KiB snapshot part holds about 4,000 addresses.
 */
const MAX_BATCH = 25_000;

export interface NftablesSinkOptions {
  config: NftablesConfig;
  /** This host's node id: its own bans are in its primary jails already. */
  nodeId: string;
  holdings: Holdings;
  pick: PickBackend;
  log: Logger;
  /** How nft is run (tests run it inside a network namespace). */
  nft?: NftOptions;
}

interface LastReconcile extends Partial<ReconcileResult> {
  at: number;
  error?: string;
}

/**
 * The kernel-sets sink: the fleet's bans in the agent's own nftables table (`table inet
 * syncfail2ban`), one transaction per batch. It builds the table at start, looks at it
 * every CHECK_MS (rebuilding it when someone flushed it), reconciles the sets from their own
 * listing at start, after a rebuild and every nft_reconcile_interval, and leaves the table in
 * place when it stops, so that protection outlives a restart of the agent. Every primary jail
 * it takes maps to the one table.
 *
 * Under dry_run (the factory picks the dry-run backend in place of the kernel sets) it only
 * reads: its table checks and reconciliations write too, so they are left out.
 */
export class NftablesSink implements Sink {
  readonly projection: Projection;
  /** An element's timeout is its ban's end: a ban whose end moves later is written again. */
  readonly followsEnds = true;
  private readonly dryRun: boolean;
  private readonly helper: NftHelper;
  private readonly nft: Nft;
  private readonly sets: KernelSets;
  private readonly batcher: Batcher;
  private readonly throttle = new LogThrottle();
  /** Why the last look at the table failed, until one succeeds. */
  private failure: NftError | Error | null = null;
  private reconciled: LastReconcile | null = null;
  private blocked: Record<string, number> = {};
  private present: boolean | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: NftablesSinkOptions) {
    const { config, holdings, log } = options;
    this.projection = new Projection(new Map(config.jails.map((jail) => [jail, TABLE])), options.nodeId);
    this.helper = new NftHelper(log);
    this.nft = new Nft({ ...options.nft, helper: this.helper });
    this.sets = new KernelSets({
      nft: this.nft,
      shape: config,
      wanted: () => this.projection.wanted(holdings, TABLE),
      endOf: (address) => this.projection.end(holdings, TABLE, address),
      log,
    });
    const backend = options.pick(this.sets);
    this.dryRun = backend !== this.sets;
    this.batcher = new Batcher(backend, log, { maxBatch: MAX_BATCH });
  }

  submit(changes: readonly Change[]): void {
    for (const change of changes) this.batcher.submit(change);
  }

  /** Looks at the table (rebuilding it when needed) and reconciles the sets now. */
  async reconcile(): Promise<void> {
    await this.running;
    if (await this.look()) await this.reconcileSets();
  }

  async start(): Promise<void> {
    // Not awaited: a hung nft must not hold up start-up; changes queue meanwhile.
    this.schedule(0);
  }

  /** Applies what was accepted and leaves the table: the bans stay enforced while the agent is down. */
  async stop(deadlineMs: number): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    this.stopped = true;
    clearTimeout(this.timer);
    // A look or a reconciliation under way waits on nft as long as its timeout (minutes): not past the deadline.
    if (this.running) await waitAtMost(this.running, deadlineMs);
    if (!(await this.batcher.stop(Math.max(0, deadline - Date.now())))) {
      this.options.log.error({ sink: 'nftables', backlog: this.batcher.stats().backlog }, 'stopped before every accepted change was applied');
    }
    this.helper.close();
  }

  status(): PartStatus {
    const { config } = this.options;
    const { dryRun } = this;
    const stats = this.batcher.stats();
    const fix = this.failure instanceof NftError ? this.failure.fix : 'see the message and the agent\'s log ("journalctl -u syncfail2ban")';
    const problems: Problem[] = sinkProblems(stats, fix);
    if (this.failure && !stats.lastError) problems.unshift({ what: `nftables cannot be used: ${this.failure.message}`, fix });
    else if (this.reconciled?.error !== undefined && problems.length === 0) {
      problems.push({ what: `reconciling the sets failed: ${this.reconciled.error}`, fix: `${fix}; it is retried every ${CHECK_MS / 1000} s` });
    }
    const reconciled = this.reconciled;
    return {
      kind: 'sink',
      name: 'nftables',
      problems,
      measures: {
        ...sinkMeasures(stats),
        blocked_packets: counted('packets the table\'s rules dropped or rejected since its chains were built, by hook', 'hook', this.blocked),
        ...(reconciled?.elements
          ? {
              set_elements: { help: 'elements in each nftables set at the last reconciliation', type: 'gauge', label: 'set', values: reconciled.elements },
              // Labelled by target as the sync jails' are: one metric family for both sinks.
              reconcile_added: { help: 'missing bans the last reconciliation queued or wrote, by target', type: 'gauge', label: 'target', values: { [TABLE]: reconciled.added ?? 0 } },
              reconcile_removed: { help: 'released bans the last reconciliation queued or removed, by target', type: 'gauge', label: 'target', values: { [TABLE]: reconciled.removed ?? 0 } },
            }
          : {}),
      },
      details: {
        table: `inet ${TABLE}${this.present === false ? ' (absent)' : ''}`,
        hooks: config.hooks.join(' '),
        verdict: config.verdict,
        ports: config.ports.length === 0 ? 'all' : config.ports.map(({ from, to }) => (from === to ? `${from}` : `${from}-${to}`)).join(' '),
        jails: config.jails.join(' '),
        ...(dryRun ? { dry_run: true } : {}),
        ...(reconciled ? { last_reconcile: { time: new Date(reconciled.at).toISOString() }, last_reconcile_ok: reconciled.error === undefined } : {}),
      },
    };
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.schedule(CHECK_MS);
      });
    }, delayMs);
    this.timer.unref();
  }

  /** Looks at the table (rebuilding what is missing), then reconciles the sets when due. */
  private async tick(): Promise<void> {
    if ((await this.look()) && !this.stopped && this.reconcileDue()) await this.reconcileSets();
  }

  /** Looks at the table, rebuilding what is missing (but in a dry run); true when the sets may be reconciled now. */
  private async look(): Promise<boolean> {
    const { log } = this.options;
    const { dryRun } = this;
    try {
      if (dryRun) {
        this.present = (await this.nft.listJson(['table', 'inet', TABLE], true)) !== undefined;
      } else {
        const check = await this.sets.check();
        if (check.repaired) log.warn({ sink: 'nftables' }, `table inet ${TABLE} was missing or changed (flushed?); rebuilt, and its sets are reconciled now`);
        this.blocked = check.blocked;
        this.present = true;
      }
      if (this.failure) log.info({ sink: 'nftables' }, 'nftables can be used again');
      const recovered = this.failure !== null;
      this.failure = null;
      if (recovered) this.batcher.retryNow();
      return !dryRun;
    } catch (error) {
      const failure = error as Error;
      if (this.throttle.pass(failure.message) !== null) {
        log.error({ sink: 'nftables' }, `nftables cannot be used: ${failure.message}${failure instanceof NftError ? `; fix: ${failure.fix}` : ''}`);
      }
      this.failure = failure;
      return false;
    }
  }

  private reconcileDue(): boolean {
    const last = this.reconciled;
    return this.sets.stale || !last || last.error !== undefined || Date.now() - last.at >= this.options.config.reconcileIntervalS * 1000;
  }

  private async reconcileSets(): Promise<void> {
    const { log } = this.options;
    try {
      const result = await this.sets.reconcile();
      const changed = result.added + result.removed + result.retimed;
      if (this.reconciled?.error !== undefined) log.info({ sink: 'nftables' }, 'the sets reconcile again');
      log[changed > 0 ? 'info' : 'debug']({ sink: 'nftables', ...result }, `reconciled the nftables sets: ${result.added} element(s) added, ${result.removed} removed, ${result.retimed} with a new timeout`);
      this.reconciled = { at: Date.now(), ...result };
    } catch (error) {
      const message = (error as Error).message;
      if (this.throttle.pass(`reconcile ${message}`) !== null) log.warn({ sink: 'nftables', err: message }, `reconciling the nftables sets failed (${message}); retried while it fails`);
      this.reconciled = { ...this.reconciled, at: Date.now(), error: message };
    }
  }
}
