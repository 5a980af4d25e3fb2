import { NODE_ID } from '../../src/event.js';
import type { PartStatus, Problem } from '../../src/status.js';
import type { Adopt } from '../bridge/bridge.js';
import type { Part } from '../part.js';
import type { FleetState } from './fleet-state.js';
import { ADOPTED, MANUAL } from './holdings.js';
import type { LoadResult } from './holdings-file.js';

/** Snapshots shown in the status, the most recent first. */
const SNAPSHOTS_SHOWN = 20;

/**
 * The fleet state's lifecycle and report: loads the holdings store first (before the
 * sinks that project it and the links that feed it), closes it last, and says at start
 * who adopts what an earlier version left (the sync jails' content, the bridge's holders).
 */
export class FleetPart implements Part {
  private loaded: LoadResult | undefined;

  constructor(
    private readonly fleet: FleetState,
    /** The sync jails' reconciler adopts what they hold (and then calls the fleet's adoptionDone). */
    private readonly syncJailsAdopt: boolean,
  ) {}

  async start(): Promise<void> {
    this.loaded = this.fleet.load();
    if (this.fleet.adoptionPending && !this.syncJailsAdopt) this.fleet.adoptionDone();
  }

  async stop(): Promise<void> {
    await this.fleet.close();
  }

  /** On the first start with a store, the holders a bridge state file of an earlier version kept go into it. */
  bridgeAdopter(): Adopt | undefined {
    if (!this.loaded?.fresh) return undefined;
    return (origin, jail, address) => this.fleet.addAll(adoptedOrigin(origin), jail, [address]);
  }

  status(): PartStatus {
    const status = this.fleet.status();
    const byJail: Record<string, number> = {};
    const byOrigin: Record<string, number> = {};
    for (const [jail, origins] of Object.entries(status.holdings)) {
      for (const [origin, count] of Object.entries(origins)) {
        byJail[jail] = (byJail[jail] ?? 0) + count;
        byOrigin[origin] = (byOrigin[origin] ?? 0) + count;
      }
    }
    const problems: Problem[] = status.lastError
      ? [{ what: `the holdings store cannot be written: ${status.lastError}`, fix: `make ${status.stateDir} writable by root and check that its disk is not full` }]
      : [];
    // Kept in the order they ended.
    const snapshots = status.snapshots.slice(-SNAPSHOTS_SHOWN).reverse();
    const perSnapshot = (value: (snapshot: (typeof snapshots)[number]) => number) => Object.fromEntries(status.snapshots.map((snapshot) => [`${snapshot.origin} ${snapshot.jail}`, value(snapshot)]));
    return {
      kind: 'fleet',
      problems,
      measures: {
        holdings: { help: 'bans held, by primary jail', type: 'gauge', label: 'jail', values: byJail },
        holdings_by_origin: { help: 'bans held, by origin (a node id, @manual, @adopted)', type: 'gauge', label: 'origin', values: byOrigin },
        unbans_without_holding: { help: 'unbans from an origin that held nothing for the address: nothing changed', type: 'counter', value: status.unbansWithoutHolding },
        refused_at_cap: { help: 'bans refused because the holdings store is at its limits', type: 'counter', value: status.refusedAtCap },
        snapshot_complete: { help: '1 when the last snapshot from this origin for this jail arrived complete, 0 when it only added', type: 'gauge', label: 'snapshot', values: perSnapshot((s) => (s.complete ? 1 : 0)) },
        snapshot: { help: 'when the last snapshot from this origin for this jail ended', type: 'gauge', unit: 'timestamp', label: 'snapshot', values: perSnapshot((s) => Date.parse(s.at) / 1000) },
      },
      details: {
        state_dir: status.stateDir,
        ...Object.fromEntries(
          snapshots.map((s) => [
            `snapshot ${s.origin} ${s.jail}`,
            { fields: { complete: s.complete, parts_received: s.partsReceived, parts: s.parts, addresses: s.addresses, added: s.added, released: s.released, at: s.at } },
          ]),
        ),
      },
    };
  }
}

/** Holders from a bridge state file of an earlier version, as holdings: "@manual" stays manual, anything not a node id is adopted. */
function adoptedOrigin(origin: string): string {
  if (origin === MANUAL) return MANUAL;
  return NODE_ID.test(origin) ? origin : ADOPTED;
}
