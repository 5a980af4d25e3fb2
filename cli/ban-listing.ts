import { remainingBantime, UNTIL_UNBANNED } from '../src/bantime.js';
import { canonicalText } from '../src/ip.js';

export interface JailBan {
  /** Canonical text. */
  address: string;
  /** Seconds the ban has left (src/bantime.ts), -1 until unbanned. */
  bantime: number;
}

/** A line of the listing that is not a ban with its time, or whose address is not valid. */
export interface SkippedLine {
  /** The entry (the line's start when it is not a ban with its time). */
  entry: string;
  reason: string;
}

/**
 * The bans of fail2ban's `get <jail> banip --with-time` reply, canonicalised, each with the
 * time it has left at `nowMs`; the lines that are not valid bans go to `skip`.
 */
export function readBanListing(lines: readonly unknown[], nowMs: number, skip: (line: SkippedLine) => void): JailBan[] {
  const bans: JailBan[] = [];
  // fail2ban lists bans in the order they came: the local time of each minute is worked out once,
  // whether a burst shares a start or a jail's bans came over weeks. Time zones change their
  // offset at whole minutes.
  let minuteKey = -1;
  let minuteSeconds = 0;
  for (const line of lines) {
    const fields = typeof line === 'string' ? withTime(line) : undefined;
    if (!fields) {
      skip({ entry: String(line).slice(0, 100), reason: 'not a ban with its time' });
      continue;
    }
    const text = canonicalText(fields.entry);
    if (typeof text !== 'string') {
      skip({ entry: fields.entry, reason: text.reason });
      continue;
    }
    const { start, length } = fields;
    const minute = Math.floor(start / 100);
    if (length >= 0 && minute !== minuteKey) {
      minuteKey = minute;
      minuteSeconds = localSeconds(minute * 100);
    }
    // fail2ban prints the start without its fraction of a second: a second later never ends the ban early.
    bans.push({ address: text, bantime: length < 0 ? UNTIL_UNBANNED : remainingBantime(length, minuteSeconds + (start % 100) + 1, nowMs) });
  }
  return bans;
}

/**
 * The bans of the jail's syncfail2ban Python action listing (its listing(), see
 * etc/fail2ban/action.d/syncfail2ban.py): one line per ban, `<address> <start> <bantime>`, the
 * start in seconds since the epoch, the bantime in whole seconds (-1: for good), or `! <entry>`
 * for a ban that is no address. Canonicalised, each with the time it has left at `nowMs`.
 */
export function readActionListing(text: string, nowMs: number, skip: (line: SkippedLine) => void): JailBan[] {
  const bans: JailBan[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0) continue;
    if (line.startsWith('! ')) {
      skip({ entry: line.slice(2), reason: 'not an IP address or network' });
      continue;
    }
    const lengthAt = line.lastIndexOf(' ');
    const startAt = line.lastIndexOf(' ', lengthAt - 1);
    const start = Number(line.slice(startAt + 1, lengthAt));
    const length = Number(line.slice(lengthAt + 1));
    if (startAt < 0 || !(start > 0) || !Number.isSafeInteger(length) || length < UNTIL_UNBANNED) {
      skip({ entry: line.slice(0, 100), reason: 'not a ban with its time' });
      continue;
    }
    const entry = line.slice(0, startAt);
    const address = canonicalText(entry);
    if (typeof address !== 'string') skip({ entry, reason: address.reason });
    else bans.push({ address, bantime: remainingBantime(length, start, nowMs) });
  }
  return bans;
}

const SPACE = 0x20;
const PLUS = 0x2b;
const MINUS = 0x2d;
const EQUALS = 0x3d;
const COLON = 0x3a;
const ZERO = 0x30;
const NINE = 0x39;
/** `YYYY-MM-DD HH:MM:SS`: the separator expected at each position, 0 where a digit goes. */
const DATE_TIME = [0, 0, 0, 0, MINUS, 0, 0, MINUS, 0, 0, SPACE, 0, 0, COLON, 0, 0, COLON, 0, 0];

/**
 * One line of `get <jail> banip --with-time`: `<entry> \t<start> + <length> = <end>`, the
 * start in fail2ban's local time as `YYYY-MM-DD HH:MM:SS`, the length in whole seconds (-1:
 * for good); undefined for any other line. `start` is the start's digits as one number
 * (YYYYMMDDhhmmss). Read by hand, without a regular expression and its match: a listing
 * has 100,000 lines.
 */
export function withTime(line: string): { entry: string; start: number; length: number } | undefined {
  const separator = line.indexOf(' \t');
  if (separator < 0) return undefined;
  let at = separator + 2;
  if (line.length < at + DATE_TIME.length) return undefined;
  let start = 0;
  for (const expected of DATE_TIME) {
    const code = line.charCodeAt(at++);
    if (expected === 0) {
      if (code < ZERO || code > NINE) return undefined;
      start = start * 10 + code - ZERO;
    } else if (code !== expected) {
      return undefined;
    }
  }
  if (line.charCodeAt(at) !== SPACE || line.charCodeAt(at + 1) !== PLUS || line.charCodeAt(at + 2) !== SPACE) return undefined;
  at += 3;
  const negative = line.charCodeAt(at) === MINUS;
  if (negative) at += 1;
  const digitsFrom = at;
  let length = 0;
  for (let code = line.charCodeAt(at); code >= ZERO && code <= NINE; code = line.charCodeAt(++at)) length = length * 10 + code - ZERO;
  if (at === digitsFrom || line.charCodeAt(at) !== SPACE || line.charCodeAt(at + 1) !== EQUALS || line.charCodeAt(at + 2) !== SPACE) return undefined;
  return { entry: line.slice(0, separator), start, length: negative ? -length : length };
}

/**
 * A start as `withTime` reads it (YYYYMMDDhhmmss), a wall-clock time in this host's time zone
 * (the one fail2ban prints in), as seconds since the epoch. In the hour a change from summer
 * time repeats, the later of the two: a ban then ends up to an hour late on peers, never early.
 */
function localSeconds(start: number): number {
  const field = (unit: number) => Math.floor(start / unit) % 100;
  const [year, month, day, hour, minute, second] = [Math.floor(start / 1e10), field(1e8), field(1e6), field(1e4), field(1e2), field(1)] as const;
  const first = new Date(year, month - 1, day, hour, minute, second).getTime();
  const later = new Date(first + 3_600_000);
  const repeated = later.getDate() === day && later.getHours() === hour && later.getMinutes() === minute;
  return (repeated ? later.getTime() : first) / 1000;
}
