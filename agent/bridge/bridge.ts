import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OpnsenseConfig } from '../../src/config.js';
import { ConfigError } from '../../src/config-reader.js';
import type { SyncEvent } from '../../src/event.js';
import type { Logger } from '../../src/log.js';
import type { PartStatus } from '../../src/status.js';
import type { Route, RouteResult } from '../intake.js';
import type { Part } from '../part.js';
import type { BatcherOptions } from '../sinks/batcher.js';
import { DesiredState, holderOf, refusedHold, type HoldResult } from './desired-state.js';
import { FirewallSync } from './firewall-sync.js';
import { LogThrottle } from './log-throttle.js';
import { decodeBridgeState, decodeJournalRecord, encodeBridgeState, STATE_FILE_NAME, type DecodedState } from './persisted-state.js';
import { StateFile, type Journal } from './state-file.js';

/**
 * The OPNsense bridge: a Route that sees every valid ban and unban (every host's, this
 * host's included, and manual ones), keeps the reference-counted desired content of each
 * alias mapped in [opn_aliases], and has one FirewallSync per firewall make it so (each
 * a sink of its own in the status).
 */
export class OpnsenseBridge implements Route, Part {
  readonly name = 'opnsense';
  private readonly desired: DesiredState;
  readonly firewalls: FirewallSync[];
  private readonly stateFile: StateFile;
  private readonly throttle = new LogThrottle();

  /** Throws a ConfigError when opn_ca_file cannot be read or a firewall's settings are unusable. */
  constructor(
    private readonly config: OpnsenseConfig,
    stateDir: string,
    private readonly log: Logger,
    options: { batcher?: Partial<BatcherOptions>; stateWriteDelayMs?: number; desired?: DesiredState; dryRun?: boolean } = {},
  ) {
    this.desired = options.desired ?? new DesiredState();
    this.stateFile = new StateFile(
      join(stateDir, STATE_FILE_NAME),
      (generation) => encodeBridgeState(this.desired, this.firewalls.map((sync) => sync.ledger), generation),
      log,
      ...(options.stateWriteDelayMs === undefined ? [] : [options.stateWriteDelayMs]),
    );
    const ca = readCaFile(config);
    this.firewalls = config.firewalls.map(
      (firewall) =>
        new FirewallSync({
          firewall,
          verifyTls: config.verifyTls,
          ...(ca === undefined ? {} : { ca }),
          killStates: config.killStates,
          reconcileIntervalS: config.reconcileIntervalS,
          aliases: config.aliases,
          desired: this.desired,
          state: this.stateFile,
          log,
          ...(options.batcher === undefined ? {} : { batcher: options.batcher }),
          dryRun: options.dryRun === true,
        }),
    );
  }

  get subparts(): readonly Part[] {
    return this.firewalls;
  }

  /** Loads the saved state, then reconciles every firewall. Call before events can arrive. */
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
      { firewalls: this.firewalls.map((sync) => sync.url), aliases: Object.fromEntries(config.aliases), stateFile: this.stateFile.path, wanted: this.desired.counts() },
      'OPNsense bridge started',
    );
  }

  offer(event: SyncEvent): RouteResult {
    const alias = this.config.aliases.get(event.jail);
    if (alias === undefined) return 'unmapped';
    const address = event.address.text;
    if (event.action === 'ban') {
      const held = this.desired.hold(alias, address, holderOf(event));
      if (refusedHold(held)) {
        this.refuseAtCap(held, alias, address);
        // Handled (and logged) here: the event itself was valid, so it is no refusal of intake.
        return 'queued';
      }
      const fresh = held === 'new';
      for (const sync of this.firewalls) {
        // A repeated ban (e.g. syncfail2ban-client -f) re-queues only what is not known to be there yet.
        if (fresh || !sync.ledger.present(alias, address)) sync.submit('ban', alias, address);
      }
    } else {
      const released =
        event.origin === undefined
          ? this.desired.releaseJail(alias, address, event.jail)
          : this.desired.release(alias, address, holderOf(event));
      if (released) for (const sync of this.firewalls) sync.submit('unban', alias, address);
    }
    if (this.log.isLevelEnabled('debug')) {
      this.log.debug({ jail: event.jail, alias, address, holders: this.desired.holders(alias, address) }, `${event.action} of ${address} for alias ${alias}`);
    }
    this.stateFile.markDirty();
    return 'queued';
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
      measures: { wanted: { help: 'addresses an alias should hold', type: 'gauge', label: 'alias', values: this.desired.counts() } },
      details: { state_file: this.stateFile.path, persistent },
    };
  }

  /** The saved snapshot, then the journal of what was claimed after it. */
  private restore(saved: DecodedState, journal: Journal): void {
    let refused = 0;
    for (const [alias, address, holder] of saved.wanted) {
      if (refusedHold(this.desired.hold(alias, address, holder))) refused += 1;
    }
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
    // Later than the snapshot, in order: each record says who held the address at that time.
    for (const record of journal.records) {
      const decoded = decodeJournalRecord(record);
      if (!decoded) {
        skipped += 1;
        continue;
      }
      const [firewall, alias, address, holders] = decoded;
      // A claim taken back: not the bridge's, holders unchanged.
      claim(firewall, alias, address, holders !== null);
      if (holders === null) continue;
      this.desired.forget(alias, address);
      for (const holder of holders) {
        if (refusedHold(this.desired.hold(alias, address, holder))) refused += 1;
      }
    }
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
    const { moved, dropped: unmapped } = this.desired.prune(this.config.aliases);
    if (refused > 0) {
      this.log.error(
        { refused, max: this.desired.maxAddresses },
        `the state file holds more than the bridge may (${this.desired.maxAddresses} addresses, ${this.desired.maxHolders} holders per address, ${this.desired.maxHolderEntries} holders in all); ${refused} saved ban holder(s) were dropped`,
      );
    }
    if (moved > 0) {
      this.log.info({ moved }, `moved ${moved} saved ban holder(s) to the alias their jail maps to now in [opn_aliases]; reconciliation adds them there and removes from the old alias what the bridge added`);
    }
    if (unmapped > 0) {
      this.log.info({ dropped: unmapped }, `dropped ${unmapped} saved ban holder(s) of jails no longer mapped to an alias in [opn_aliases] (or refused by the alias they map to now, at a cap); reconciliation removes what they kept`);
    }
    if (orphaned > 0) {
      this.log.warn({ dropped: orphaned }, `forgot ${orphaned} address(es) the bridge had added on firewalls no longer in opn_fw_ip; remove them there by hand if they should go`);
    }
    if (skipped > 0) this.log.warn({ skipped }, `skipped ${skipped} invalid entries of the state file ${this.stateFile.path} and its journal`);
    if (refused + moved + unmapped + orphaned + skipped > 0) this.stateFile.markDirty();
  }

  private refuseAtCap(held: Extract<HoldResult, 'full' | 'crowded' | 'saturated'>, alias: string, address: string): void {
    const skipped = this.throttle.pass(held);
    if (skipped === null) return;
    const more = skipped > 0 ? ` (${skipped} more refused since the last message)` : '';
    this.log.error(
      { alias, address, wanted: this.desired.size },
      held === 'full'
        ? `the OPNsense bridge already holds its maximum of ${this.desired.maxAddresses} wanted addresses (MAX_WANTED_ADDRESSES): ban of ${address} for alias ${alias} refused${more}. Something bans far more than a firewall alias should hold: look for a flood of bans (which hosts publish them, see the peers in syncfail2ban-client status), or shorten bantime`
        : held === 'saturated'
          ? `the OPNsense bridge already holds its maximum of ${this.desired.maxHolderEntries} ban holders (host + jail) over all addresses (MAX_HOLDER_ENTRIES): ban of ${address} for alias ${alias} by one more refused${more}; an address already wanted stays in the alias through its other holders. Look for a client publishing under many node ids, or a flood of bans`
          : `${address} in alias ${alias} already has ${this.desired.maxHolders} holders (host + jail, MAX_HOLDERS_PER_ADDRESS): one more refused${more}; the address stays in the alias through the others. Look for a client publishing under many node ids`,
    );
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

/** The content of opn_ca_file, read once for all firewalls; a ConfigError (exit 78) when it cannot be used. */
function readCaFile(config: OpnsenseConfig): Buffer | undefined {
  const path = config.caFile;
  if (path === undefined || !config.firewalls.some((firewall) => firewall.baseUrl.startsWith('https:'))) return undefined;
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ConfigError(`opn_ca_file: cannot read ${path} (${reason}); fix: point opn_ca_file at the PEM certificate the firewalls present (or their CA), readable by this user, or remove it to use the system CAs`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new ConfigError(`opn_ca_file: ${path} holds no PEM certificate ("-----BEGIN CERTIFICATE-----"); fix: point opn_ca_file at the PEM certificate the firewalls present (or their CA)`);
  }
  return pem;
}
