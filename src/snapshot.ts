import { randomBytes } from 'node:crypto';
import { isBantime, UNTIL_UNBANNED } from './bantime.js';
import { jsonObject, originRefusal, printable, refuse, splitTopic, TOPIC_ROOT, utf8, viaRefusal, type Refusal } from './event.js';
import { parseAddress, plainIPv4, type CanonicalAddress } from './ip.js';

/**
 * A snapshot (`syncfail2ban-client -f <jail>`): everything the origin's jail bans now, on
 * `f2b/<jail>/snapshot` as JSON `{"origin", "id", "part", "parts", "ips", "bantimes"}`, cut
 * into parts of at most MAX_SNAPSHOT_PART_BYTES. Parts count from 0; an empty jail is one
 * part with no ips. `"bantimes"`, when there, is as long as `"ips"`: each address's remaining
 * seconds (src/bantime.ts, -1 until unbanned); without it every address is held until
 * unbanned. It is a list of its own so that receivers of an earlier version, which read
 * `"ips"` alone, take the part as before.
 * A syncfail2ban broker adds `"via"`, as to events: the connection the part came on.
 */
export const SNAPSHOT_ACTION = 'snapshot';
export const MAX_SNAPSHOT_PART_BYTES = 64 * 1024;
/** A part as a broker passes it on: room for `,"via":"…"` (at most 64 characters) on top. */
export const MAX_STAMPED_PART_BYTES = MAX_SNAPSHOT_PART_BYTES + 128;
/**
 * What a part costs a rate limit (the broker's per client, the agent's per connection): one
 * token per KiB, as if each KiB were an event (at most 1 KiB), so a part of 64 KiB takes 64.
 * A snapshot of 100,000 bans (about 30 parts) fits in the default burst; a flood of parts
 * drains a bucket as fast as the same bytes of events.
 */
export function snapshotPartTokens(payload: Buffer): number {
  return Math.ceil(payload.length / 1024);
}
/** 2,000,000 holdings of IPv6 addresses fit in far fewer; more is not a snapshot. */
const MAX_SNAPSHOT_PARTS = 10_000;
export const SNAPSHOT_ID = /^[0-9a-f]{16}$/;

export interface SnapshotPart {
  jail: string;
  origin: string;
  id: string;
  part: number;
  parts: number;
  /** The canonical text of each valid entry; entries whose address or bantime is not valid are left out and counted in `invalid`. */
  ips: string[];
  /** Each address's remaining seconds (-1 until unbanned), in the order of `ips`; absent when the part carried none. */
  bantimes?: number[];
  invalid: number;
  /** The entries the part carried, valid or not. */
  entries: number;
  /** The connection it was published on, as a syncfail2ban broker saw it (see SyncEvent.via). */
  via?: string;
}

export function snapshotTopic(jail: string): string {
  return `${TOPIC_ROOT}/${jail}/${SNAPSHOT_ACTION}`;
}

export function isSnapshotTopic(topic: string): boolean {
  return topic.endsWith(`/${SNAPSHOT_ACTION}`);
}

/** A snapshot's id, shared by its parts (SNAPSHOT_ID). */
export function newSnapshotId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * The payloads of one snapshot of `addresses` (canonical text), each at most
 * MAX_SNAPSHOT_PART_BYTES; `bantimes`, in the same order, is each one's remaining seconds
 * (-1 until unbanned; none given: all until unbanned).
 */
export function encodeSnapshot(origin: string, addresses: readonly string[], bantimes?: readonly number[], id = newSnapshotId()): string[] {
  const timed = bantimes?.some((bantime) => bantime !== UNTIL_UNBANNED) ?? false;
  // Room for the envelope with the largest part numbers.
  const envelope = JSON.stringify({ origin, id, part: MAX_SNAPSHOT_PARTS, parts: MAX_SNAPSHOT_PARTS, ips: [], ...(timed ? { bantimes: [] } : {}) }).length;
  const groups: Array<{ ips: string[]; bantimes: number[] }> = [{ ips: [], bantimes: [] }];
  let size = envelope;
  addresses.forEach((address, index) => {
    const bantime = bantimes?.[index] ?? UNTIL_UNBANNED;
    // Quotes and comma; the bantime and its comma.
    const cost = address.length + 3 + (timed ? String(bantime).length + 1 : 0);
    if (size + cost > MAX_SNAPSHOT_PART_BYTES) {
      groups.push({ ips: [], bantimes: [] });
      size = envelope;
    }
    groups.at(-1)!.ips.push(address);
    groups.at(-1)!.bantimes.push(bantime);
    size += cost;
  });
  return groups.map(({ ips, bantimes }, part) => JSON.stringify({ origin, id, part, parts: groups.length, ips, ...(timed ? { bantimes } : {}) }));
}

/** Who sent a part, and which part it is. */
export type SnapshotHeader = Pick<SnapshotPart, 'jail' | 'origin' | 'id' | 'part' | 'parts' | 'via'>;

/** A part whose envelope is valid, its entries not read yet (readSnapshotEntries). */
export interface SnapshotEnvelope {
  header: SnapshotHeader;
  ips: unknown[];
  bantimes: unknown[] | undefined;
}

/**
 * Validates a part's envelope (topic, size, JSON, origin, id, numbering, via, the lists)
 * without reading its entries: what a broker needs to pass it on, and a receiver to refuse
 * it (a rate limit) before paying for its entries.
 */
export function decodeSnapshotEnvelope(topic: string, payload: Buffer): ({ ok: true } & SnapshotEnvelope) | Refusal {
  const levels = splitTopic(topic, SNAPSHOT_ACTION);
  if (!levels.ok) return levels;
  if (payload.length > MAX_STAMPED_PART_BYTES) return refuse('oversized', `snapshot part of ${payload.length} bytes exceeds ${MAX_STAMPED_PART_BYTES}`);
  const text = utf8(payload);
  const json = text === undefined ? 'not-json' : jsonObject(text);
  if (json === 'not-json') return refuse('bad-payload', 'snapshot part is not UTF-8 JSON');
  if (json === 'not-object') return refuse('bad-payload', 'snapshot part is not a JSON object');
  const { origin, id, part, parts, ips, bantimes, via } = json;
  const badOrigin = originRefusal(origin, 'snapshot ');
  if (badOrigin) return badOrigin;
  if (typeof id !== 'string' || !SNAPSHOT_ID.test(id)) return refuse('bad-payload', `snapshot "id" ${printable(String(id))} is not 16 hex digits`);
  if (!Number.isSafeInteger(parts) || (parts as number) < 1 || (parts as number) > MAX_SNAPSHOT_PARTS) return refuse('bad-payload', `snapshot "parts" must be 1 to ${MAX_SNAPSHOT_PARTS}`);
  if (!Number.isSafeInteger(part) || (part as number) < 0 || (part as number) >= (parts as number)) return refuse('bad-payload', 'snapshot "part" must be 0 to parts - 1');
  if (!Array.isArray(ips)) return refuse('bad-payload', 'snapshot "ips" is not a list');
  if (bantimes !== undefined && (!Array.isArray(bantimes) || bantimes.length !== ips.length)) return refuse('bad-payload', 'snapshot "bantimes" is not a list as long as "ips"');
  const badVia = viaRefusal(via, 'snapshot ');
  if (badVia) return badVia;
  const header: SnapshotHeader = { jail: levels.jail, origin: origin as string, id, part: part as number, parts: parts as number, ...(via === undefined ? {} : { via: via as string }) };
  return { ok: true, header, ips: ips as unknown[], bantimes: bantimes as unknown[] | undefined };
}

/** Why a valid address is left out of a part (the never-ban list): an IPv4 host is asked by its value (plainIPv4), unparsed. */
export interface EntryExclusion {
  reason(address: CanonicalAddress): string | null;
  reasonIPv4(value: number): string | null;
}

/**
 * Validates a part's entries as strictly as single events: every address canonicalised, any
 * entry whose address or bantime is not valid left out (counted in `invalid`). `exclude`
 * leaves out valid addresses too (never-ban), counted in `excluded`. Only text is kept of
 * each address, and a plain IPv4 address (the common entry) is not parsed into objects at
 * all: 100,000 parsed addresses cost the agent's young GC dearly.
 */
export function readSnapshotEntries({ header, ips, bantimes }: SnapshotEnvelope, exclude?: EntryExclusion): { part: SnapshotPart; excluded: number } {
  const valid: string[] = [];
  const validBantimes: number[] = [];
  let invalid = 0;
  let excluded = 0;
  for (let index = 0; index < ips.length; index++) {
    const bantime = bantimes === undefined ? UNTIL_UNBANNED : bantimes[index];
    const text = entryText(ips[index], exclude);
    if (text === undefined || !isBantime(bantime)) {
      invalid += 1;
    } else if (text === null) {
      excluded += 1;
    } else {
      valid.push(text);
      validBantimes.push(bantime);
    }
  }
  const part: SnapshotPart = { ...header, ips: valid, invalid, entries: ips.length };
  if (bantimes !== undefined) part.bantimes = validBantimes;
  return { part, excluded };
}

/** An entry's canonical text; null when `exclude` leaves it out, undefined when it is not an address. */
function entryText(ip: unknown, exclude?: EntryExclusion): string | null | undefined {
  if (typeof ip !== 'string') return undefined;
  const value = plainIPv4(ip);
  if (value !== undefined) return exclude?.reasonIPv4(value) ? null : ip;
  const parsed = parseAddress(ip);
  if (!parsed.ok) return undefined;
  return exclude?.reason(parsed.address) ? null : parsed.address.text;
}

/** A part's envelope and entries validated (decodeSnapshotEnvelope, then readSnapshotEntries). */
export function decodeSnapshotPart(topic: string, payload: Buffer): { ok: true; part: SnapshotPart } | Refusal {
  const envelope = decodeSnapshotEnvelope(topic, payload);
  return envelope.ok ? { ok: true, part: readSnapshotEntries(envelope).part } : envelope;
}

/** A valid part's payload with `via` written over whatever the sender put there (a broker's stamp). */
export function stampSnapshotPart(payload: Buffer, via: string): Buffer {
  return Buffer.from(JSON.stringify({ ...(JSON.parse(payload.toString('utf8')) as object), via }));
}
