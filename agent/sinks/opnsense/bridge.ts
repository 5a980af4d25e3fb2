import { join } from 'node:path';
import type { OpnsenseConfig } from '../../../src/config.js';
import type { Logger } from '../../../src/log.js';
import type { PartStatus } from '../../../src/status.js';
import type { Adoption } from '../../fleet/adoption.js';
import type { Holdings } from '../../fleet/holdings.js';
import { Projection } from '../../fleet/projection.js';
import type { Part } from '../../../src/part.js';
import type { BatcherOptions } from '../batcher.js';
import type { PickBackend } from '../sink.js';
import { FirewallSink } from './firewall-sink.js';
import { ConfigError } from '../../../src/config-reader.js';
import { StateFileError } from '../../state-dir/durable-file.js';
import { SnapshotJournal } from '../../state-dir/snapshot-journal.js';
import {
  decodeBridgeState,
  decodeJournalRecord,
  encodeBridgeState,
  JOURNAL_FILE_NAME,
  legacyGeneration,
  MAX_STATE_FILE_BYTES,
  STATE_FILE_NAME,
  type DecodedState,
  type JournalRecord,
  type LedgerJournal,
} from './persisted-state.js';

/** The journal records that follow the snapshot, and those that were not records (a line torn by a crash). */
interface Journal {
  records: unknown[];
  skipped: number;
}

/**
 * The OPNsense bridge: one sink per firewall of opn_fw_ip (FirewallSink), each keeping the
 * aliases mapped in [opn_aliases] equal to the projection of the holdings (every origin's
 * holdings count, this host's included), and the state they share: what each added on its
 * firewall (its ledger), so that none ever removes an entry someone else made. This part
 * keeps that state in state_dir: it starts before the sinks (loading what they added) and
 * stops after them (saving it).
 */
export class OpnsenseBridge implements Part {
  readonly projection: Projection;
  readonly firewalls: FirewallSink[];
  private readonly stateFile: SnapshotJournal;
  private readonly statePath: string;
  /** The state is saved (false: state_dir could not be used at start; logged then). */
  private persistent = true;

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
      /** Reads its state from state_dir, writes nothing there (a dry run). */
      stateReadOnly?: boolean;
    },
  ) {
    this.projection = new Projection(config.aliases);
    this.statePath = join(stateDir, STATE_FILE_NAME);
    this.stateFile = new SnapshotJournal({
      snapshot: this.statePath,
      journal: join(stateDir, JOURNAL_FILE_NAME),
      what: 'the OPNsense bridge state',
      serialise: () => encodeBridgeState(this.firewalls.map((sink) => sink.ledger)),
      log,
      maxBytes: MAX_STATE_FILE_BYTES,
      // The snapshot is one line of JSON.
      maxLineBytes: MAX_STATE_FILE_BYTES,
      legacyGeneration,
      ifSnapshotLost:
        'Addresses the bridge added before are unknown to it now and will never be removed by it: check the aliases on the firewall, and re-send current bans with "syncfail2ban-client -f <jail>" on each host',
      ...(options.stateWriteDelayMs === undefined ? {} : { compactDelayMs: options.stateWriteDelayMs }),
      readOnly: options.stateReadOnly === true,
    });
    const state: LedgerJournal = {
      writeAhead: (records) => this.stateFile.writeAhead(records.map((record) => JSON.stringify(record))),
      markDirty: () => this.stateFile.markDirty(),
    };
    this.firewalls = config.firewalls.map(
      (firewall) =>
        new FirewallSink({
          firewall,
          verifyTls: config.verifyTls,
          ...(config.ca === undefined ? {} : { ca: config.ca }),
          killStates: config.killStates,
          reconcileIntervalS: config.reconcileIntervalS,
          projection: this.projection,
          holdings,
          state,
          log,
          ...(options.batcher === undefined ? {} : { batcher: options.batcher }),
          pick: options.pick,
        }),
    );
  }

  /**
   * Loads what the sinks added on each firewall. Call after the holdings are loaded and
   * before the sinks start.
   */
  async start(): Promise<void> {
    const { config, log } = this;
    if (config.aliases.size === 0) {
      log.warn('opn_fw_sync is true but [opn_aliases] maps no jail, so nothing is mirrored; add "<jail> = <alias>" lines under [opn_aliases]');
    }
    const { saved, journal } = this.load();
    this.restore(saved, journal);
    log.info(
      { firewalls: this.firewalls.map((sink) => sink.url), aliases: Object.fromEntries(config.aliases), stateFile: this.statePath, wanted: this.wanted() },
      'OPNsense bridge started',
    );
  }

  /** Saves the state; call after the sinks stopped. */
  async stop(): Promise<void> {
    await this.stateFile.close();
  }

  status(): PartStatus {
    const { persistent } = this;
    return {
      kind: 'bridge',
      problems: persistent
        ? this.stateFile.problems()
        : [{ what: `the bridge state cannot be saved to ${this.statePath} (see the log): it forgets what it added on restart`, fix: 'make state_dir a directory root can write, then restart the agent' }],
      measures: { wanted: { help: 'addresses an alias should hold', type: 'gauge', label: 'alias', values: this.wanted() } },
      details: { state_file: this.statePath, persistent },
    };
  }

  /**
   * The saved ledger and the journal records after it. A file that is not one the agent
   * wrote stops the start; a state_dir that cannot be written leaves the bridge running
   * without saving (loudly).
   */
  private load(): { saved: DecodedState; journal: Journal } {
    let saved: DecodedState = { wanted: [], added: [], skipped: 0 };
    const journal: Journal = { records: [], skipped: 0 };
    const lines: string[] = [];
    try {
      this.stateFile.load({
        snapshot: (line) => lines.push(line),
        snapshotEnd: () => {
          saved = decodeBridgeState(JSON.parse(lines.join('\n')) as unknown);
        },
        record: (line) => {
          try {
            journal.records.push(JSON.parse(line) as unknown);
          } catch {
            journal.skipped += 1; // a record torn by a crash: its batch was never sent
          }
        },
      });
    } catch (error) {
      if (error instanceof StateFileError) throw new ConfigError(`state_dir: ${error.message}; fix: ${error.fix}`);
      this.persistent = false;
      this.log.error(
        { stateFile: this.statePath },
        `cannot keep the OPNsense bridge state in ${this.statePath} (${(error as Error).message}); the OPNsense bridge runs without saving its state, so a restart forgets what it added: set state_dir to a directory this user may write (default /var/lib/syncfail2ban)`,
      );
    }
    return { saved, journal };
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
    const byUrl = new Map(this.firewalls.map((sink) => [sink.url, sink]));
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
      const sink = byUrl.get(firewall);
      for (const [alias, addresses] of aliases) {
        for (const [address, ours] of addresses) {
          if (!ours) continue;
          if (sink) sink.ledger.add(alias, address);
          else orphaned += 1;
        }
      }
    }
    if (orphaned > 0) {
      this.log.warn({ dropped: orphaned }, `forgot ${orphaned} address(es) the bridge had added on firewalls no longer in opn_fw_ip; remove them there by hand if they should go`);
    }
    if (skipped > 0) this.log.warn({ skipped }, `skipped ${skipped} invalid entries of the state file ${this.statePath} and its journal`);
    if (saved.wanted.length + orphaned + skipped > 0) this.stateFile.markDirty();
  }
}
