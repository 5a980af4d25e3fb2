import type { Logger } from '../../src/log.js';
import type { SnapshotPart } from '../../src/snapshot.js';

/** Parts of one snapshot must all arrive within this long of its first part, or it counts as incomplete. */
const SNAPSHOT_DEADLINE_MS = 60_000;
/** Snapshots being received at once (one per origin and jail); more are refused until one ends. */
const MAX_OPEN = 32;
/** Results kept for status, most recent first out. */
const MAX_RESULTS = 1_000;

export interface SnapshotResult {
  origin: string;
  jail: string;
  id: string;
  at: string;
  complete: boolean;
  partsReceived: number;
  parts: number;
  addresses: number;
  /** Holdings the snapshot added. */
  added: number;
  /** Holdings it released (complete snapshots only). */
  released: number;
}

interface Assembly {
  result: SnapshotResult;
  received: Uint8Array;
  seen: Set<string>;
  timer: NodeJS.Timeout;
}

/** Where a snapshot's holdings go: the fleet state. */
export interface SnapshotStore {
  /** Adds holdings of one origin in one jail; returns how many were new. */
  addAll(origin: string, jail: string, addresses: readonly string[], bantimes?: readonly number[]): number;
  /** Releases the origin's holdings in the jail that are not in `keep`; returns how many. */
  releaseAllBut(origin: string, jail: string, keep: ReadonlySet<string>): number;
}

/**
 * Assembles snapshot parts. Each part's addresses are added as it arrives (adding is always
 * right); once every part of a snapshot is in, the origin's other holdings in that jail are
 * released, so a missed unban heals. A snapshot that misses its deadline, or is overtaken by
 * a newer one from the same origin and jail, only added.
 */
export class SnapshotReceiver {
  private readonly open = new Map<string, Assembly>();
  private readonly results = new Map<string, SnapshotResult>();
  private readonly finished = new Set<string>();

  constructor(
    private readonly fleet: SnapshotStore,
    private readonly log: Logger,
    private readonly deadlineMs = SNAPSHOT_DEADLINE_MS,
  ) {}

  /** False when refused: too many snapshots at once. */
  take(part: SnapshotPart): boolean {
    const key = `${part.origin}/${part.jail}`;
    if (this.finished.has(`${key}/${part.id}`)) return true; // a duplicate of a finished snapshot's part
    let assembly = this.open.get(key);
    if (assembly && assembly.result.id !== part.id) {
      this.finish(key, assembly, 'a newer snapshot from the same origin started');
      assembly = undefined;
    }
    if (!assembly) {
      if (this.open.size >= MAX_OPEN) return false;
      assembly = this.begin(key, part);
    }
    if (assembly.received[part.part] === 1) return true;
    assembly.received[part.part] = 1;
    assembly.result.partsReceived += 1;
    const ips = part.ips.map((address) => address.text);
    assembly.result.addresses += ips.length;
    for (const ip of ips) assembly.seen.add(ip);
    assembly.result.added += this.fleet.addAll(part.origin, part.jail, ips, part.bantimes);
    if (assembly.result.partsReceived === part.parts) this.finish(key, assembly);
    return true;
  }

  /** The last snapshot per origin and jail, complete or not. */
  status(): SnapshotResult[] {
    return [...this.results.values()];
  }

  close(): void {
    for (const assembly of this.open.values()) clearTimeout(assembly.timer);
    this.open.clear();
  }

  private begin(key: string, part: SnapshotPart): Assembly {
    const assembly: Assembly = {
      result: { origin: part.origin, jail: part.jail, id: part.id, at: new Date().toISOString(), complete: false, partsReceived: 0, parts: part.parts, addresses: 0, added: 0, released: 0 },
      received: new Uint8Array(part.parts),
      seen: new Set(),
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
    if (this.finished.size > MAX_RESULTS) this.finished.delete(this.finished.values().next().value!);
    this.results.delete(key);
    this.results.set(key, result);
    if (this.results.size > MAX_RESULTS) this.results.delete(this.results.keys().next().value!);
    const { origin, jail, parts, partsReceived } = result;
    if (incomplete) {
      this.log.warn(
        { origin, jail, snapshot: result.id, parts, partsReceived, added: result.added },
        `incomplete snapshot of ${jail} from ${origin} (${partsReceived} of ${parts} parts: ${incomplete}): its ${result.added} new ban(s) were added, nothing was released; run syncfail2ban-client -f ${jail} on ${origin} again`,
      );
      return;
    }
    result.complete = true;
    result.released = this.fleet.releaseAllBut(origin, jail, assembly.seen);
    this.log.info(
      { origin, jail, snapshot: result.id, parts, addresses: result.addresses, added: result.added, released: result.released },
      `snapshot of ${jail} from ${origin} complete: ${result.addresses} address(es), ${result.added} new holding(s), ${result.released} released`,
    );
  }
}
