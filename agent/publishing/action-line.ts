import { JAIL_NAME, printable, type Action } from '../../src/event.js';
import { parseAddress, type CanonicalAddress } from '../../src/ip.js';

/**
 * The action socket's line protocol, spoken by fail2ban's Python action
 * (etc/fail2ban/action.d/syncfail2ban.py). One event per line, six fields separated by
 * single spaces, ASCII:
 *
 *     <kind> <jail> <address> <time> <bantime> <bancount>\n
 *     ban sshd 203.0.113.7 1733312000.250 600 1
 *
 * kind: `ban`, `prolong` (bantime.increment lengthened the ban: a ban with a later end)
 * or `unban`; time: when fail2ban's ban started, seconds since the epoch (up to 6
 * decimals); bantime: its length in seconds, -1 for a ban until unbanned; bancount: how
 * often fail2ban banned the address. The agent answers every line, in order, with `ok`
 * (the event is in the outbox) or `refused <reason>: <detail>`.
 */
export const MAX_LINE_BYTES = 256;

/** A ban, unban or prolonged ban this host's fail2ban made, to be published. */
export interface ActionEvent {
  action: Action;
  jail: string;
  address: CanonicalAddress;
  /** When fail2ban's ban began, in seconds since the epoch. */
  start: number;
  /** Its length in seconds (fail2ban's bantime); -1: until unbanned. */
  bantime: number;
  bancount: number;
}

/** Why a line was refused; `never-ban` is the action socket's, after the line itself was valid. */
export type LineRefusalReason = 'malformed' | 'oversized' | 'unknown-kind' | 'bad-jail-name' | 'bad-address' | 'sync-jail' | 'never-ban';

export type LineResult = { ok: true; event: ActionEvent } | { ok: false; reason: LineRefusalReason; detail: string };

const KINDS: Record<string, Action> = { ban: 'ban', prolong: 'ban', unban: 'unban' };
/** The fields as the action writes them (the outbox's records are checked against the same). */
export const TIME = /^\d{1,11}(\.\d{1,6})?$/;
export const BANTIME = /^(-1|\d{1,10})$/;
export const BANCOUNT = /^\d{1,9}$/;

/** Validates one line (without its newline); `syncJails` are the sync jails of [jails], which never publish. */
export function parseActionLine(line: string, syncJails: ReadonlySet<string>): LineResult {
  if (line.length > MAX_LINE_BYTES) return refuse('oversized', `line of ${line.length} bytes exceeds ${MAX_LINE_BYTES}`);
  const fields = line.split(' ');
  if (fields.length !== 6) return refuse('malformed', `${printable(line)} has ${fields.length} field(s), not 6: <ban|prolong|unban> <jail> <address> <time> <bantime> <bancount>`);
  const [kind, jail, addressText, time, bantime, bancount] = fields as [string, string, string, string, string, string];
  const action = Object.hasOwn(KINDS, kind) ? KINDS[kind]! : undefined;
  if (!action) return refuse('unknown-kind', `${printable(kind)} is not ban, prolong or unban`);
  if (!JAIL_NAME.test(jail)) return refuse('bad-jail-name', `jail name ${printable(jail)} is not valid`);
  if (syncJails.has(jail)) return refuse('sync-jail', `${jail} is a sync jail in [jails]: its bans came from the fleet and are not published again (remove syncfail2ban.py from its actions)`);
  const address = parseAddress(addressText);
  if (!address.ok) return refuse('bad-address', `${printable(addressText)}: ${address.reason}`);
  if (!TIME.test(time)) return refuse('malformed', `time ${printable(time)} is not seconds since the epoch`);
  if (!BANTIME.test(bantime)) return refuse('malformed', `bantime ${printable(bantime)} is not a number of seconds or -1`);
  if (!BANCOUNT.test(bancount)) return refuse('malformed', `bancount ${printable(bancount)} is not a count`);
  return { ok: true, event: { action, jail, address: address.address, start: Number(time), bantime: Number(bantime), bancount: Number(bancount) } };
}

function refuse(reason: LineRefusalReason, detail: string): LineResult {
  return { ok: false, reason, detail };
}
