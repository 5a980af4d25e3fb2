import { randomBytes } from 'node:crypto';
import { jsonObject, originRefusal, printable, refuse, splitTopic, TOPIC_ROOT, utf8, viaRefusal, type Refusal } from './event.js';
import { parseAddress, type CanonicalAddress } from './ip.js';

/**
 * A snapshot (`syncfail2ban-client -f <jail>`): everything the origin's jail bans now, on
 * `f2b/<jail>/snapshot` as JSON `{"origin", "id", "part", "parts", "ips"}`, cut into parts
 * of at most MAX_SNAPSHOT_PART_BYTES. Parts count from 0; an empty jail is one part with no ips.
 * A syncfail2ban broker adds `"via"`, as to events: the connection the part came on.
 */
export const SNAPSHOT_ACTION = 'snapshot';
export const MAX_SNAPSHOT_PART_BYTES = 64 * 1024;
/** A part as a broker passes it on: room for `,"via":"…"` (at most 64 characters) on top. */
export const MAX_STAMPED_PART_BYTES = MAX_SNAPSHOT_PART_BYTES + 128;
/** 2,000,000 holdings of IPv6 addresses fit in far fewer; more is not a snapshot. */
const MAX_SNAPSHOT_PARTS = 10_000;
const SNAPSHOT_ID = /^[0-9a-f]{16}$/;

export interface SnapshotPart {
  jail: string;
  origin: string;
  id: string;
  part: number;
  parts: number;
  /** Entries that are not valid addresses are left out and counted in `invalid`. */
  ips: CanonicalAddress[];
  invalid: number;
  /** The connection it was published on, as a syncfail2ban broker saw it (see SyncEvent.via). */
  via?: string;
}

export function snapshotTopic(jail: string): string {
  return `${TOPIC_ROOT}/${jail}/${SNAPSHOT_ACTION}`;
}

export function isSnapshotTopic(topic: string): boolean {
  return topic.endsWith(`/${SNAPSHOT_ACTION}`);
}

/** The payloads of one snapshot of `addresses` (canonical text), each at most MAX_SNAPSHOT_PART_BYTES. */
export function encodeSnapshot(origin: string, addresses: readonly string[]): string[] {
  const id = randomBytes(8).toString('hex');
  // Room for the envelope with the largest part numbers.
  const envelope = JSON.stringify({ origin, id, part: MAX_SNAPSHOT_PARTS, parts: MAX_SNAPSHOT_PARTS, ips: [] }).length;
  const groups: string[][] = [[]];
  let size = envelope;
  for (const address of addresses) {
    const cost = address.length + 3; // quotes and comma
    if (size + cost > MAX_SNAPSHOT_PART_BYTES) {
      groups.push([]);
      size = envelope;
    }
    groups.at(-1)!.push(address);
    size += cost;
  }
  return groups.map((ips, part) => JSON.stringify({ origin, id, part, parts: groups.length, ips }));
}

type SnapshotDecodeResult = { ok: true; part: SnapshotPart } | Refusal;

/** Validates one part as strictly as a single event: every address canonicalised, anything else refused. */
export function decodeSnapshotPart(topic: string, payload: Buffer): SnapshotDecodeResult {
  const levels = splitTopic(topic, SNAPSHOT_ACTION);
  if (!levels.ok) return levels;
  if (payload.length > MAX_STAMPED_PART_BYTES) return refuse('oversized', `snapshot part of ${payload.length} bytes exceeds ${MAX_STAMPED_PART_BYTES}`);
  const text = utf8(payload);
  const json = text === undefined ? 'not-json' : jsonObject(text);
  if (json === 'not-json') return refuse('bad-payload', 'snapshot part is not UTF-8 JSON');
  if (json === 'not-object') return refuse('bad-payload', 'snapshot part is not a JSON object');
  const { origin, id, part, parts, ips, via } = json;
  const badOrigin = originRefusal(origin, 'snapshot ');
  if (badOrigin) return badOrigin;
  if (typeof id !== 'string' || !SNAPSHOT_ID.test(id)) return refuse('bad-payload', `snapshot "id" ${printable(String(id))} is not 16 hex digits`);
  if (!Number.isSafeInteger(parts) || (parts as number) < 1 || (parts as number) > MAX_SNAPSHOT_PARTS) return refuse('bad-payload', `snapshot "parts" must be 1 to ${MAX_SNAPSHOT_PARTS}`);
  if (!Number.isSafeInteger(part) || (part as number) < 0 || (part as number) >= (parts as number)) return refuse('bad-payload', 'snapshot "part" must be 0 to parts - 1');
  if (!Array.isArray(ips)) return refuse('bad-payload', 'snapshot "ips" is not a list');
  const badVia = viaRefusal(via, 'snapshot ');
  if (badVia) return badVia;
  const valid: CanonicalAddress[] = [];
  let invalid = 0;
  for (const ip of ips as unknown[]) {
    const parsed = typeof ip === 'string' ? parseAddress(ip) : undefined;
    if (parsed?.ok) valid.push(parsed.address);
    else invalid += 1;
  }
  const decoded: SnapshotPart = { jail: levels.jail, origin: origin as string, id, part: part as number, parts: parts as number, ips: valid, invalid };
  if (via !== undefined) decoded.via = via as string;
  return { ok: true, part: decoded };
}

/** A valid part's payload with `via` written over whatever the sender put there (a broker's stamp). */
export function stampSnapshotPart(payload: Buffer, via: string): Buffer {
  return Buffer.from(JSON.stringify({ ...(JSON.parse(payload.toString('utf8')) as object), via }));
}
