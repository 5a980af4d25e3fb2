import type { Logger } from '../../src/log.js';
import type { SnapshotPart } from '../../src/snapshot.js';
import type { Watch } from './holdings.js';
import { forgetOldest } from './forget-oldest.js';

/** Parts of one snapshot must all arrive within this long of its first part, or it counts as incomplete. */
const SNAPSHOT_DEADLINE_MS = 60_000;
/**
 * Snapshots being received at once: one per origin and jail, so one origin's snapshots never
 * take another's place. Beyond this many (origins come from the network), the one whose last
 * part is the oldest ends as incomplete: a live snapshot sends a part every fraction of a second.
 */
const MAX_OPEN = 4_096;
/** Results kept for status (the last per origin and jail), and finished snapshots whose late parts are ignored. */
const MAX_RESULTS = 4_096;

export interface SnapshotResult {
  origin: string;
  jail: string;
  id: string;
  at: string;
  complete: boolean;
  partsReceived: number;
  parts: number;
  /** The valid addresses its parts carried past never-ban; for a snapshot only noted (this host's own), every entry they carried. */
  addresses: number;
  /** Holdings the snapshot added. */
  added: number;
  /** Addresses not taken: the origin's quota or the store's cap. */
  refused: number;
  /** Holdings it released (complete snapshots only; counted as the release goes). */
  released: number;
}

interface Assembly {
  result: SnapshotResult;
  /** What its parts confirm: the snapshot's mark, and how many of the origin's holdings have it; none for a snapshot only noted. */
  confirmed?: Watch;
  /** One bit per part received. */
  received: Uint8Array;
  timer: NodeJS.Timeout;
}

/** Where a snapshot's holdings go: the fleet state (see there). */
export interface SnapshotStore {
  /** A new snapshot from the origin in the jail: what its parts confirm. */
  beginSnapshot(origin: string, jail: string): Watch;
  /** Holds (or confirms) a part's addresses, each for `bantimes[i]` seconds from now (-1 or none: until unbanned); how many were new, and how many refused. */
  takeSnapshotPart(id: string, confirmed: Watch, addresses: readonly string[], bantimes?: readonly number[]): { added: number; refused: number };
  /** Every part arrived: the origin's holdings in the jail that no part confirmed are released; `released` counts them as they go, `done` at the end. */
  completeSnapshot(id: string, confirmed: Watch, released: (count: number) => void, done: () => void): void;
  /** It ended incomplete: it only added. */
  abandonSnapshot(confirmed: Watch): void;
}

/**
 * Assembles snapshot parts. Each part's addresses are held as it arrives (adding is always
 * right); once every part of a snapshot is in, the origin's other holdings in that jail are
 * released, so a missed unban heals. A snapshot that misses its deadline, or is overtaken by
 * a newer one from the same origin and jail, only added.
 */
export class SnapshotReceiver {
  /** "origin/jail" -> the snapshot being received, the least recently active first. */
  private readonly open = new Map<string, Assembly>();
  private readonly results = new Map<string, SnapshotResult>();
  private readonly finished = new Set<string>();
  /**
   * The status's gauges of the last snapshots, by "origin jail", kept as the results change:
   * built whole at each status, 4,096 of them took a busy agent 10-30 ms.
   */
  readonly gauges: SnapshotGauges = { complete: {}, at: {} };

  constructor(
    private readonly fleet: SnapshotStore,
    private readonly log: Logger,
    private readonly deadlineMs = SNAPSHOT_DEADLINE_MS,
    /** This host's origin: its own snapshots are always shown (see own()). */
    private readonly nodeId?: string,
  ) {}

  /** `apply`: its addresses go into the holdings; false: the part is only noted (this host's own snapshot, which no sink here takes). */
  take(part: SnapshotPart, apply = true): void {
    const key = `${part.origin}/${part.jail}`;
    if (this.finished.has(`${key}/${part.id}`)) return; // a duplicate of a finished snapshot's part
    let assembly = this.open.get(key);
    if (assembly && assembly.result.id !== part.id) {
      this.finish(key, assembly, 'a newer snapshot from the same origin started');
      assembly = undefined;
    }
    if (assembly) {
      this.open.delete(key);
      this.open.set(key, assembly);
    } else {
      if (this.open.size >= MAX_OPEN) {
        const [stalest, oldest] = this.open.entries().next().value!;
        this.finish(stalest, oldest, `${MAX_OPEN} snapshots were being received at once, and its last part was the oldest`);
      }
      assembly = this.begin(key, part, apply);
    }
    const { result } = assembly;
    const bit = 1 << (part.part & 7);
    if (assembly.received[part.part >> 3]! & bit) return;
    assembly.received[part.part >> 3]! |= bit;
    result.partsReceived += 1;
    // A part only noted was not read: what it carried.
    result.addresses += assembly.confirmed ? part.ips.length : part.entries;
    if (assembly.confirmed) {
      const taken = this.fleet.takeSnapshotPart(part.id, assembly.confirmed, part.ips, part.bantimes);
      result.added += taken.added;
      result.refused += taken.refused;
    }
    if (result.partsReceived === part.parts) this.finish(key, assembly);
  }

  /** The last snapshot per origin and jail, complete or not. */
  status(): SnapshotResult[] {
    return [...this.results.values()];
  }

  /** Puts the result into the status's gauges. */
  private showResult(result: SnapshotResult): void {
    const key = gaugeKey(result);
    this.gauges.complete[key] = result.complete ? 1 : 0;
    this.gauges.at[key] = Date.parse(result.at) / 1000;
  }

  /** This host's own snapshots, per jail the newest: the one being received, else the last that ended. */
  own(): SnapshotResult[] {
    if (this.nodeId === undefined) return [];
    const own = new Map<string, SnapshotResult>();
    for (const result of this.results.values()) if (result.origin === this.nodeId) own.set(result.jail, result);
    for (const { result } of this.open.values()) if (result.origin === this.nodeId) own.set(result.jail, result);
    return [...own.values()];
  }

  /** The snapshots being received into the holdings, with what their parts confirmed. */
  *receiving(): Iterable<{ id: string; confirmed: Watch }> {
    for (const { result, confirmed } of this.open.values()) if (confirmed) yield { id: result.id, confirmed };
  }

  close(): void {
    for (const assembly of this.open.values()) {
      clearTimeout(assembly.timer);
      if (assembly.confirmed) this.fleet.abandonSnapshot(assembly.confirmed);
    }
    this.open.clear();
  }

  private begin(key: string, part: SnapshotPart, apply: boolean): Assembly {
    const assembly: Assembly = {
      result: { origin: part.origin, jail: part.jail, id: part.id, at: new Date().toISOString(), complete: false, partsReceived: 0, parts: part.parts, addresses: 0, added: 0, refused: 0, released: 0 },
      ...(apply ? { confirmed: this.fleet.beginSnapshot(part.origin, part.jail) } : {}),
      received: new Uint8Array(Math.ceil(part.parts / 8)),
      timer: setTimeout(() => this.finish(key, assembly, `not every part arrived within ${this.deadlineMs / 1000} s`), this.deadlineMs),
    };
    assembly.timer.unref();
    this.open.set(key, assembly);
    return assembly;
  }

  /** `incomplete`: why it did not complete; absent when every part arrived. */
  private finish(key: string, assembly: Assembly, incomplete?: string): void {
    clearTimeout(assembly.timer);
    this.open.delete(key);
    const { result } = assembly;
    result.at = new Date().toISOString();
    this.finished.add(`${key}/${result.id}`);
    trimOldest(this.finished);
    this.results.delete(key);
    this.results.set(key, result);
    this.showResult(result);
    trimOldest(this.results, (forgotten) => {
      const shown = gaugeKey(this.results.get(forgotten)!);
      delete this.gauges.complete[shown];
      delete this.gauges.at[shown];
    });
    const { origin, jail, parts, partsReceived } = result;
    const refused = result.refused > 0 ? `; ${result.refused} address(es) refused (the origin's quota or the store's cap: see syncfail2ban-client status)` : '';
    if (incomplete && !assembly.confirmed) {
      this.log.warn({ origin, jail, snapshot: result.id, parts, partsReceived }, `this host's own snapshot of ${jail} came back incomplete through the broker (${partsReceived} of ${parts} parts: ${incomplete}); peers likely missed parts too`);
      return;
    }
    if (incomplete) {
      this.fleet.abandonSnapshot(assembly.confirmed!);
      this.log.warn(
        { origin, jail, snapshot: result.id, parts, partsReceived, added: result.added, refused: result.refused },
        `incomplete snapshot of ${jail} from ${origin} (${partsReceived} of ${parts} parts: ${incomplete}): its ${result.added} new ban(s) were added, nothing was released${refused}; run syncfail2ban-client -f ${jail} on ${origin} again`,
      );
      return;
    }
    result.complete = true;
    this.showResult(result);
    if (!assembly.confirmed) {
      this.log.info({ origin, jail, snapshot: result.id, parts }, `this host's own snapshot of ${jail} came back whole through the broker (${parts} part(s))`);
      return;
    }
    this.fleet.completeSnapshot(
      result.id,
      assembly.confirmed,
      (count) => (result.released += count),
      () =>
        this.log.info(
          { origin, jail, snapshot: result.id, parts, addresses: result.addresses, added: result.added, released: result.released, refused: result.refused },
          `snapshot of ${jail} from ${origin} complete: ${result.addresses} address(es), ${result.added} new holding(s), ${result.released} released${refused}`,
        ),
    );
  }
}

/** The status's gauges of the last snapshots: 1 when complete, and when each ended (Unix seconds). */
export interface SnapshotGauges {
  complete: Record<string, number>;
  at: Record<string, number>;
}

function gaugeKey(result: SnapshotResult): string {
  return `${result.origin} ${result.jail}`;
}

/** Forgets the oldest entries beyond MAX_RESULTS, an eighth of them more at once. */
function trimOldest(entries: Set<string> | Map<string, unknown>, forgetting?: (key: string) => void): void {
  if (entries.size > MAX_RESULTS) forgetOldest(entries, entries.size - MAX_RESULTS + MAX_RESULTS / 8, forgetting);
}
