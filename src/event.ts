import { isBantime, MAX_BANTIME_S, UNTIL_UNBANNED } from './bantime.js';
import { type CanonicalAddress, parseAddress } from './ip.js';

/** The message contract: topic `f2b/<jail>/<action>`, payload a bare address or `{"ip", "origin", "bantime"}`. */
export type Action = 'ban' | 'unban';

export interface SyncEvent {
  jail: string;
  action: Action;
  address: CanonicalAddress;
  /** node_id of the publishing agent; absent for bare-address (manual) events. */
  origin?: string;
  /**
   * The connection it was published on, as a syncfail2ban broker saw it: the account, or the
   * source address of an anonymous client. Rate limits are kept per connection, which a
   * sender cannot choose, rather than per origin, which an anonymous one can.
   */
  via?: string;
  /**
   * A ban's remaining seconds when it was published (src/bantime.ts); absent: until unbanned.
   * Receivers of an earlier version ignore it and hold the ban until the unban.
   */
  bantime?: number;
}

/** The fields of a payload besides the address. */
export type PayloadFields = Pick<SyncEvent, 'origin' | 'via' | 'bantime'>;

export const TOPIC_ROOT = 'f2b';
export const SUBSCRIPTION = `${TOPIC_ROOT}/+/+`;
/** Far above any valid payload (an address plus a node id in JSON); bigger ones are refused unread. */
export const MAX_PAYLOAD_BYTES = 1024;

/** Jail names as fail2ban sections and MQTT topic levels both accept them. */
export const JAIL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** node_id: a hostname-like name; also the MQTT identity when authentication is on. */
export const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const ACTIONS: Record<string, Action> = { ban: 'ban', banip: 'ban', unban: 'unban', unbanip: 'unban' };

/** Why an incoming message was refused; each reason has its own counter. */
export type RefusalReason =
  | 'bad-topic'
  | 'bad-jail-name'
  | 'unknown-action'
  | 'oversized'
  | 'bad-payload'
  | 'bad-address'
  | 'bad-origin'
  | 'rate-limited';

/** A message refused, with the reason it is counted under and what exactly was wrong. */
export interface Refusal {
  ok: false;
  reason: RefusalReason;
  detail: string;
}

export type DecodeResult = { ok: true; event: SyncEvent } | Refusal;

export function parseAction(text: string): Action | undefined {
  return Object.hasOwn(ACTIONS, text) ? ACTIONS[text] : undefined;
}

export function topicFor(jail: string, action: Action): string {
  return `${TOPIC_ROOT}/${jail}/${action}`;
}

/**
 * The JSON payload of an event; absent fields (and a bantime of -1) are left out. `bancount`
 * (how often the origin's fail2ban banned the address) is for whoever reads the events:
 * receivers do not use it.
 */
export function encodePayload(address: Pick<CanonicalAddress, 'text'>, { origin, via, bantime, bancount }: PayloadFields & { bancount?: number } = {}): string {
  return JSON.stringify({ ip: address.text, origin, via, bantime: bantime === UNTIL_UNBANNED ? undefined : bantime, bancount });
}

/** An account name or a source address (`2001:db8:1:2::/64` for IPv6). */
const VIA = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$/;

/** Turns one MQTT message into a validated event, or says exactly why not. */
export function decodeEvent(topic: string, payload: Buffer): DecodeResult {
  const levels = splitTopic(topic);
  if (!levels.ok) return levels;
  const action = parseAction(levels.action);
  if (!action) return refuse('unknown-action', `action ${printable(levels.action)} is not ban or unban`);
  if (payload.length > MAX_PAYLOAD_BYTES) {
    return refuse('oversized', `payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  }

  const body = decodePayload(payload);
  if ('error' in body) return body.error;
  const parsed = parseAddress(body.ip);
  if (!parsed.ok) return refuse('bad-address', `${printable(body.ip)}: ${parsed.reason}`);
  const event: SyncEvent = { jail: levels.jail, action, address: parsed.address };
  if (body.origin !== undefined) event.origin = body.origin;
  if (body.via !== undefined) event.via = body.via;
  // An unban ends the ban whatever it says about time: its bantime is not looked at.
  if (action === 'ban' && body.bantime !== undefined) {
    if (!isBantime(body.bantime)) return refuse('bad-payload', `"bantime" ${printable(String(body.bantime))} is not -1 or whole seconds from 0 to ${MAX_BANTIME_S}`);
    if (body.bantime !== UNTIL_UNBANNED) event.bantime = body.bantime;
  }
  return { ok: true, event };
}

/** A topic `f2b/<jail>/<action>` (with `only`: that action alone) split, its jail name checked. */
export function splitTopic(topic: string, only?: string): { ok: true; jail: string; action: string } | Refusal {
  const levels = topic.split('/');
  if (levels.length !== 3 || levels[0] !== TOPIC_ROOT || (only !== undefined && levels[2] !== only)) {
    return refuse('bad-topic', `topic ${printable(topic)} is not ${TOPIC_ROOT}/<jail>/${only ?? '<action>'}`);
  }
  const [, jail, action] = levels as [string, string, string];
  if (!JAIL_NAME.test(jail)) return refuse('bad-jail-name', `jail name ${printable(jail)} is not valid`);
  return { ok: true, jail, action };
}

/** The payload as text; undefined when it is not UTF-8. */
export function utf8(payload: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(payload);
  } catch {
    return undefined;
  }
}

/** The fields of the JSON object `text` holds; 'not-json' or 'not-object' when it does not hold one. */
export function jsonObject(text: string): Record<string, unknown> | 'not-json' | 'not-object' {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return 'not-json';
  }
  return typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>) : 'not-object';
}

/** Refuses an "origin" field that is not a node id; `prefix` names the message it is in. */
export function originRefusal(origin: unknown, prefix = ''): Refusal | undefined {
  if (typeof origin === 'string' && NODE_ID.test(origin)) return undefined;
  return refuse('bad-origin', `${prefix}"origin" ${printable(String(origin))} is not a valid node_id`);
}

/** Refuses a "via" field (absent, or stamped by a broker) that is not an account or an address; `prefix` names the message it is in. */
export function viaRefusal(via: unknown, prefix = ''): Refusal | undefined {
  if (via === undefined || (typeof via === 'string' && VIA.test(via))) return undefined;
  return refuse('bad-payload', `${prefix}"via" ${printable(String(via))} is not an account or an address`);
}

type Body = { ip: string; origin?: string; via?: string; bantime?: unknown } | { error: Refusal };

function decodePayload(payload: Buffer): Body {
  const text = utf8(payload)?.trim();
  if (text === undefined) return { error: refuse('bad-payload', 'payload is not UTF-8 text') };
  if (!text.startsWith('{')) return { ip: text };

  const json = jsonObject(text);
  if (json === 'not-json') return { error: refuse('bad-payload', 'payload starts with { but is not valid JSON') };
  if (json === 'not-object') return { error: refuse('bad-payload', 'JSON payload is not an object') };
  const { ip, origin, via, bantime } = json;
  if (typeof ip !== 'string') return { error: refuse('bad-payload', 'JSON payload has no string "ip"') };
  const refusal = (origin === undefined ? undefined : originRefusal(origin)) ?? viaRefusal(via);
  if (refusal) return { error: refusal };
  // Checked above (bantime by decodeEvent, for bans only); decodeEvent leaves out what is absent.
  return { ip, origin: origin as string | undefined, via: via as string | undefined, bantime: bantime ?? undefined };
}

export function refuse(reason: RefusalReason, detail: string): Refusal {
  return { ok: false, reason, detail };
}

/** Quotes untrusted text for a log line: bounded length, control characters escaped. */
export function printable(text: string, max = 80): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return JSON.stringify(cut);
}
