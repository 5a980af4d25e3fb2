import { join } from 'node:path';
import type { OpnsenseConfig } from '../../../src/config.js';
import type { Logger } from '../../../src/log.js';
import type { PartStatus } from '../../../src/status.js';
import type { Adoption } from '../../fleet/adoption.js';
import type { Holdings } from '../../fleet/holdings.js';
import { Projection, type Change } from '../../fleet/projection.js';
import type { Part } from '../../../src/part.js';
import type { BatcherOptions } from '../batcher.js';
import type { PickBackend, Sink } from '../sink.js';
import { FirewallSync, type DesiredAliases } from './firewall-sync.js';
import { decodeBridgeState, decodeJournalRecord, encodeBridgeState, STATE_FILE_NAME, type DecodedState, type JournalRecord } from './persisted-state.js';
import { StateFile, type Journal } from './state-file.js';

/**
 * The OPNsense bridge: the projection of the holdings onto the aliases mapped in
 * [opn_aliases] (every origin's holdings count, this host's included), made so on each
 * firewall by one FirewallSync (each a sink of its own in the status). Its own state file
 * only records what it added on each firewall (the ledger), so that it never removes an
 * entry someone else made.
 */
export class OpnsenseBridge implements Sink {
  readonly projection: Projection;
  readonly firewalls: FirewallSync[];
  private readonly stateFile: StateFile;

  constructor(
    private readonly config: OpnsenseConfig,
    stateDir: string,
    private readonly holdings: Holdings,
    private readonly log: Logger,
    private readonly options: {
      pick: PickBackend;
      /** Takes the holders a state file of an earlier version kept (on the first start with a holdings store). */
      adoption?: Adoption;
      batcher?: Partial<BatcherOptions>;
      stateWriteDelayMs?: number;
    },
  ) {
    this.projection = new Projection(config.aliases);
    this.stateFile = new StateFile(
      join(stateDir, STATE_FILE_NAME),
      (generation) => encodeBridgeState(this.firewalls.map((sync) => sync.ledger), generation),
      log,
      ...(options.stateWriteDelayMs === undefined ? [] : [options.stateWriteDelayMs]),
    );
    const desired: DesiredAliases = {
      addresses: (alias) => this.projection.wanted(holdings, alias),
      holders: (alias, address) => this.projection.jailsOf(alias).flatMap((jail) => holdings.origins(jail, address).map((origin) => `${origin}/${jail}`)),
    };
    this.firewalls = config.firewalls.map(
      (firewall) =>
        new FirewallSync({
          firewall,
          verifyTls: config.verifyTls,
          ...(config.ca === undefined ? {} : { ca: config.ca }),
          killStates: config.killStates,
          reconcileIntervalS: config.reconcileIntervalS,
          aliases: config.aliases,
          desired,
          state: this.stateFile,
          log,
          ...(options.batcher === undefined ? {} : { batcher: options.batcher }),
          pick: options.pick,
        }),
    );
  }

  submit(changes: readonly Change[]): void {
    for (const sync of this.firewalls) for (const { action, target, address } of changes) sync.submit(action, target, address);
  }

  async reconcile(): Promise<void> {
    await Promise.all(this.firewalls.map((sync) => sync.reconcile()));
  }

  get subparts(): readonly Part[] {
    return this.firewalls;
  }

  /**
   * Loads what the bridge added on each firewall, then reconciles every firewall. Call after
   * the holdings are loaded and before events arrive.
   */
  async start(): Promise<void> {
    const { config, log } = this;
    this.warnAboutTransport();
    if (config.aliases.size === 0) {
      log.warn('opn_fw_sync is true but [opn_aliases] maps no jail, so nothing is mirrored; add "<jail> = <alias>" lines under [opn_aliases]');
    }
    const saved = await this.stateFile.load(decodeBridgeState);
    this.restore(saved ?? { wanted: [], added: [], skipped: 0 }, await this.stateFile.readJournal());
    for (const sync of this.firewalls) await sync.start();
    log.info(
      { firewalls: this.firewalls.map((sync) => sync.url), aliases: Object.fromEntries(config.aliases), stateFile: this.stateFile.path, wanted: this.wanted() },
      'OPNsense bridge started',
    );
  }

  /** Applies what it can until the deadline (the rest is left to the next reconciliation) and saves the state. */
  async stop(deadlineMs: number): Promise<void> {
    await Promise.all(this.firewalls.map((sync) => sync.stop(deadlineMs)));
    await this.stateFile.close();
  }

  status(): PartStatus {
    const persistent = this.stateFile.persistent;
    return {
      kind: 'bridge',
      problems: persistent
        ? []
        : [{ what: `the bridge state cannot be saved to ${this.stateFile.path} (see the log): it forgets what it added on restart`, fix: 'make state_dir a directory root can write, then restart the agent' }],
      measures: { wanted: { help: 'addresses an alias should hold', type: 'gauge', label: 'alias', values: this.wanted() } },
      details: { state_file: this.stateFile.path, persistent },
    };
  }

  private wanted(): Record<string, number> {
    return Object.fromEntries(this.projection.targets().map((alias) => [alias, this.projection.wantedCount(this.holdings, alias)]));
  }

  /**
   * The saved ledger, then the journal of what was claimed after it. The holders the files
   * name are handed to the adoption (which takes them on the first start with a holdings
   * store only): the holdings store is where holders live.
   */
  private restore(saved: DecodedState, journal: Journal): void {
    const byUrl = new Map(this.firewalls.map((sync) => [sync.url, sync]));
    let orphaned = 0;
    let skipped = saved.skipped + journal.skipped;
    // firewall -> alias -> address -> whether it is the bridge's; in order, so a later record wins.
    const claims = new Map<string, Map<string, Map<string, boolean>>>();
    const claim = (firewall: string, alias: string, address: string, ours: boolean) => {
      let aliases = claims.get(firewall);
      if (!aliases) claims.set(firewall, (aliases = new Map()));
      let addresses = aliases.get(alias);
      if (!addresses) aliases.set(alias, (addresses = new Map()));
      addresses.delete(address); // keeps the order of the last record
      addresses.set(address, ours);
    };
    for (const [firewall, alias, address] of saved.added) claim(firewall, alias, address, true);
    const records: JournalRecord[] = [];
    for (const record of journal.records) {
      const decoded = decodeJournalRecord(record);
      if (!decoded) {
        skipped += 1;
        continue;
      }
      records.push(decoded);
      const [firewall, alias, address, named] = decoded;
      // A claim taken back: not the bridge's.
      claim(firewall, alias, address, named !== null);
    }
    this.options.adoption?.bridgeHolders(saved.wanted, records.map(([, alias, address, named]) => [alias, address, named]));
    for (const [firewall, aliases] of claims) {
      const sync = byUrl.get(firewall);
      for (const [alias, addresses] of aliases) {
        for (const [address, ours] of addresses) {
          if (!ours) continue;
          if (sync) sync.ledger.add(alias, address);
          else orphaned += 1;
        }
      }
    }
    if (orphaned > 0) {
      this.log.warn({ dropped: orphaned }, `forgot ${orphaned} address(es) the bridge had added on firewalls no longer in opn_fw_ip; remove them there by hand if they should go`);
    }
    if (skipped > 0) this.log.warn({ skipped }, `skipped ${skipped} invalid entries of the state file ${this.stateFile.path} and its journal`);
    if (saved.wanted.length + orphaned + skipped > 0) this.stateFile.markDirty();
  }

  private warnAboutTransport(): void {
    const { config, log } = this;
    for (const sync of this.firewalls) {
      if (sync.url.startsWith('http:')) {
        log.warn({ firewall: sync.url }, `OPNsense ${sync.url} is reached over plain http: its API key and secret cross the network unencrypted; write the firewall without http:// in opn_fw_ip to use https`);
      } else if (!config.verifyTls) {
        log.warn(
          { firewall: sync.url },
          `TLS certificate of OPNsense ${sync.url} is not verified (opn_verify = false): anyone on the network path can pose as the firewall and read its API key; set opn_ca_file to the firewall's certificate and opn_verify = true`,
        );
      }
    }
  }
}
