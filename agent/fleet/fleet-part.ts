import { counted, counter, gauge, type PartStatus, type Problem } from '../../src/status.js';
import type { Part } from '../../src/part.js';
import type { Adoption } from './adoption.js';
import type { FleetState, FleetStatus } from './fleet-state.js';
import { ADOPTED } from './holdings.js';

/** Snapshots shown in the status, the most recent first. */
const SNAPSHOTS_SHOWN = 20;

/**
 * The fleet state's lifecycle and report: loads the holdings store first (before the
 * sinks that project it and the links that feed it), and begins the upgrade adoption;
 * closes the store last.
 */
export class FleetPart implements Part {
  constructor(
    private readonly fleet: FleetState,
    private readonly adoption: Adoption,
  ) {}

  async start(): Promise<void> {
    const { fresh } = this.fleet.load();
    this.adoption.begin(this.fleet, fresh);
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
    const adoptionError = this.adoption.error;
    const problems: Problem[] = [
      ...status.problems,
      ...(adoptionError ? [{ what: `the holdings store cannot be written: ${adoptionError}`, fix: `make ${status.stateDir} writable by root and check that its disk is not full` }] : []),
      ...limitProblems(status),
    ];
    // This host's own (what -f asks for), being received or ended, then the most recent others.
    const own = new Set(status.ownSnapshots.map((s) => `${s.origin} ${s.jail}`));
    const snapshots = [...status.ownSnapshots, ...status.snapshots.filter((s) => !own.has(`${s.origin} ${s.jail}`)).slice(-SNAPSHOTS_SHOWN).reverse()];
    return {
      kind: 'fleet',
      problems,
      measures: {
        holdings: { help: 'bans held, by primary jail', type: 'gauge', label: 'jail', values: byJail },
        holdings_by_origin: { help: 'bans held, by origin (a node id, @manual, @adopted)', type: 'gauge', label: 'origin', values: byOrigin },
        unbans_without_holding: { help: 'unbans from an origin that held nothing for the address: nothing changed', type: 'counter', value: status.unbansWithoutHolding },
        refused: counted("bans refused: the origin at its quota in the jail, the store full with the origin at its share, or 64 holders of the address already", 'reason', status.refused),
        evicted: counter("holdings dropped, the oldest of the origin most over its share, to make room for other origins' bans while the store was full", status.evicted),
        releasing: gauge('holdings complete snapshots release that are still to go (released in slices)', status.releasing),
        leases: gauge("bans held until an end (the origin's bantime); the others are held until unbanned", status.leases),
        ...(status.nextLeaseEnd === undefined ? {} : { lease_next_end: { help: "when the next lease ends, by this host's clock", type: 'gauge', unit: 'timestamp', value: status.nextLeaseEnd / 1000 } as const }),
        released: counted("holdings released, by cause: the origin's unban, a complete snapshot without them, the end of their bantime (expiry)", 'cause', status.released),
        snapshot_complete: { help: '1 when the last snapshot from this origin for this jail arrived complete, 0 when it only added', type: 'gauge', label: 'snapshot', values: status.snapshotGauges.complete },
        snapshot: { help: 'when the last snapshot from this origin for this jail ended', type: 'gauge', unit: 'timestamp', label: 'snapshot', values: status.snapshotGauges.at },
      },
      details: {
        state_dir: status.stateDir,
        limits: { fields: { max_holdings: status.limits.total, max_holdings_per_origin: status.limits.perOrigin } },
        ...Object.fromEntries(
          snapshots.map((s) => [
            `snapshot ${s.origin} ${s.jail}`,
            { fields: { id: s.id, complete: s.complete, parts_received: s.partsReceived, parts: s.parts, addresses: s.addresses, added: s.added, refused: s.refused, released: s.released, at: s.at } },
          ]),
        ),
      },
    };
  }
}

/** An origin at its quota in a jail, and a full store, are problems that name the origins. */
function limitProblems(status: FleetStatus): Problem[] {
  const { limits } = status;
  const problems: Problem[] = [];
  for (const [jail, origins] of Object.entries(status.holdings)) {
    for (const [origin, count] of Object.entries(origins)) {
      if (count < limits.perOrigin || origin === ADOPTED) continue;
      problems.push({
        what: `origin ${origin} holds ${count} bans in ${jail}, its quota: its further bans there are refused (other origins' are not)`,
        fix: `if ${origin} is a host that really bans this many, raise max_holdings_per_origin (now ${limits.perOrigin}) on every agent; otherwise find who publishes as ${origin} (an account to withdraw from [users], or a host to firewall off)`,
      });
    }
  }
  if (status.total >= limits.total) {
    const largest = status.largest.map(([origin, count]) => `${origin} (${count})`).join(', ');
    problems.push({
      what: `the holdings store is full (${status.total} of max_holdings ${limits.total}): bans from origins at their share are refused, and the oldest holdings of the largest make room for the others'; the largest: ${largest}`,
      fix: 'if these are real hosts, raise max_holdings (about 150 bytes of memory each); otherwise find who publishes as the largest origins, and lower max_holdings_per_origin',
    });
  }
  return problems;
}
