import { JAIL_NAME, NODE_ID } from '../../src/event.js';
import { isCanonical } from '../../src/ip.js';
import { SNAPSHOT_ID } from '../../src/snapshot.js';
import { ADOPTED, MANUAL, type Holdings } from './holdings.js';

/**
 * One line of the holdings store (its snapshot file and its journal), replayed in order:
 * - `+ origin jail address`, `- origin jail address`: a holding added, removed;
 * - `~ jail address`: a released address remembered for reconciliation (snapshot file only);
 * - `P origin jail id address...`: a part of snapshot `id` from the origin: each address is
 *   held (added when new) and confirmed by that snapshot;
 * - `C origin jail id`: snapshot `id` arrived complete: the origin's holdings in the jail
 *   that no part of it confirmed are released;
 * - `E origin jail end address...`: the end of the origin's holdings of these addresses (ms
 *   since the epoch; -1: until unbanned). A line of its own, after the line that added the
 *   holding, so that an agent of an earlier version, which skips lines it does not know,
 *   still reads the holding (as held until unbanned) and never loses it.
 * So the journal says at once what a complete snapshot releases, even though the agent
 * releases it in slices (see FleetState): a restart at any point replays the whole release.
 */
export type Line =
  | [op: '+' | '-', origin: string, jail: string, address: string]
  | [op: '~', jail: string, address: string]
  | [op: 'P', origin: string, jail: string, id: string, ...addresses: string[]]
  | [op: 'C', origin: string, jail: string, id: string]
  | [op: 'E', origin: string, jail: string, end: string, ...addresses: string[]];

/** How much replaying a line costs, in holdings it touches (a compaction is due once the journal costs more than the store). */
export function lineWeight(line: Line): number {
  return line[0] === 'P' || line[0] === 'E' ? Math.max(1, line.length - 4) : 1;
}

/**
 * Every holding, remembered release and `extra` line (snapshots being received or released),
 * as the lines of a snapshot file, taken in slices (SnapshotJournal): `extra` is taken at once,
 * as the store is when the snapshot begins, and the holdings' lines as they are when their
 * slice comes; the journal records appended meanwhile follow, and the replay makes it whole.
 * (A release under way at the start is its `P` and `C` lines: their replay releases whatever
 * the lines hold that it had released by then without a journal line of its own.)
 */
export function serialise(holdings: Holdings, extra: Iterable<Line>): Iterable<string> {
  const underWay = [...extra].map((line) => `${line.join(' ')}\n`);
  return lines(holdings, underWay);
}

function* lines(holdings: Holdings, underWay: readonly string[]): Generator<string> {
  // Each origin's in the order it took them, which the replay keeps (eviction takes the oldest).
  for (const [origin, jail, held] of holdings.holders()) for (const address of held.keys()) yield `+ ${origin} ${jail} ${address}\n`;
  for (const jail of holdings.releasedJails()) for (const address of holdings.released(jail)) yield `~ ${jail} ${address}\n`;
  for (const { origin, jail, address, end } of holdings.leases.entries()) yield `E ${origin} ${jail} ${end} ${address}\n`;
  yield* underWay;
}

/** An `E` line's end: ms since the epoch, or -1. */
const END = /^(-1|\d{1,15})$/;

/**
 * Replays lines into the holdings, validating each as strictly as a network event. Keeps
 * which snapshot each origin and jail is at, and marks what its parts confirmed with a number
 * of its own (Holdings.mark), as the running agent does.
 */
export class Replay {
  /** The highest mark given so far: the running agent numbers its next snapshots above it. */
  marks = 0;
  /** "origin jail" -> the snapshot being received and its mark */
  private readonly open = new Map<string, { id: string; mark: number }>();

  constructor(private readonly holdings: Holdings) {}

  /** Applies one line; false when it is not a valid line. */
  line(text: string): boolean {
    const fields = text.split(' ');
    const [op] = fields;
    if (op === '~') {
      const [, jail, address] = fields;
      if (fields.length !== 3 || !JAIL_NAME.test(jail!) || !isCanonical(address!)) return false;
      if (!this.holdings.isHeld(jail!, address!)) this.holdings.noteReleased(jail!, address!);
      return true;
    }
    const [, origin, jail, fourth] = fields as [string, string?, string?, string?];
    if (fields.length < 4 || !(origin === ADOPTED || origin === MANUAL || NODE_ID.test(origin!)) || !JAIL_NAME.test(jail!)) return false;
    const holder = origin!;
    const where = jail!;
    if (op === '+' || op === '-') {
      if (fields.length !== 4 || !isCanonical(fourth!)) return false;
      if (op === '+') this.holdings.add(holder, where, fourth!);
      else this.holdings.remove(holder, where, fourth!);
      return true;
    }
    if (op === 'E') {
      const addresses = fields.slice(4);
      if (!END.test(fourth!) || addresses.length === 0 || !addresses.every(isCanonical)) return false;
      const end = fourth === '-1' ? undefined : Number(fourth);
      for (const address of addresses) if (this.holdings.mark(holder, where, address) !== undefined) this.holdings.leases.set(holder, where, address, end);
      return true;
    }
    if (!SNAPSHOT_ID.test(fourth!)) return false;
    const key = `${holder} ${where}`;
    if (op === 'P') {
      const addresses = fields.slice(4);
      if (!addresses.every(isCanonical)) return false;
      let snapshot = this.open.get(key);
      if (!snapshot || snapshot.id !== fourth) this.open.set(key, (snapshot = { id: fourth!, mark: ++this.marks }));
      const { mark } = snapshot;
      for (const address of addresses) if (this.holdings.add(holder, where, address, mark) === 'known') this.holdings.setMark(holder, where, address, mark);
      return true;
    }
    if (op !== 'C' || fields.length !== 4) return false;
    const snapshot = this.open.get(key);
    // Only after its parts: never release on a completion the journal cannot back.
    if (!snapshot || snapshot.id !== fourth) return false;
    this.open.delete(key);
    for (const [address, mark] of this.holdings.heldBy(holder, where)) if (mark < snapshot.mark) this.holdings.remove(holder, where, address);
    return true;
  }
}
