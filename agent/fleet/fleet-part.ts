import type { PartStatus } from '../../src/status.js';
import type { Part } from '../../src/part.js';
import type { FleetState } from './fleet-state.js';

/** Snapshots shown in the status, the most recent first. */
const SNAPSHOTS_SHOWN = 20;

/**
 * The fleet state's lifecycle and report: loads the holdings store first (before the
 * sinks that project it and the links that feed it), closes it last. Without sync jails
 * there is nothing of theirs to adopt: the adoption pending after the load ends at once.
 */
export class FleetPart implements Part {
  constructor(
    private readonly fleet: FleetState,
    /** The sync jails' reconciler adopts what they hold (and then calls the fleet's adoptionDone). */
    private readonly syncJailsAdopt: boolean,
  ) {}

  async start(): Promise<void> {
    this.fleet.load();
    if (this.fleet.adoptionPending && !this.syncJailsAdopt) this.fleet.adoptionDone();
  }

  async stop(): Promise<void> {
    await this.fleet.close();
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
    // Kept in the order they ended.
    const snapshots = status.snapshots.slice(-SNAPSHOTS_SHOWN).reverse();
    const perSnapshot = (value: (snapshot: (typeof snapshots)[number]) => number) => Object.fromEntries(status.snapshots.map((snapshot) => [`${snapshot.origin} ${snapshot.jail}`, value(snapshot)]));
    return {
      kind: 'fleet',
      problems: status.problems,
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
