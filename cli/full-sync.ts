import { remainingBantime, UNTIL_UNBANNED } from '../src/bantime.js';
import { Fail2banClient } from '../src/fail2ban/client.js';
import { type CanonicalAddress, parseAddress } from '../src/ip.js';

export interface JailBan {
  address: CanonicalAddress;
  /** Seconds the ban has left (src/bantime.ts), -1 until unbanned. */
  bantime: number;
}

/**
 * fail2ban answers `get <jail> banip --with-time` for 100,000 bans in 2 to 6 s (more than a
 * plain list): -f waits for it this long at least, whatever connection_timeout says.
 */
const MIN_READ_TIMEOUT_MS = 120_000;

/**
 * One line of `get <jail> banip --with-time`: the address, the ban's start in fail2ban's local
 * time, its length in seconds (-1 for good), and its end (`9999-12-31 23:59:59` for good).
 */
const WITH_TIME = /^(.*?) \t(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) \+ (-?\d+) = /;

/**
 * The jail's current bans from the local fail2ban, canonicalised, each with the time it has
 * left; entries that are not addresses are reported and skipped.
 */
export async function readJailBans(socket: string, jail: string, timeoutMs: number): Promise<JailBan[]> {
  const client = new Fail2banClient(socket, { timeoutMs: Math.max(timeoutMs, MIN_READ_TIMEOUT_MS) });
  try {
    const reply = await client.command(['get', jail, 'banip', '--with-time']);
    if (!Array.isArray(reply)) throw new Error(`fail2ban answered "get ${jail} banip --with-time" with something that is not a list`);
    const now = Date.now();
    const bans: JailBan[] = [];
    for (const line of reply as unknown[]) {
      const fields = typeof line === 'string' ? WITH_TIME.exec(line) : null;
      const [, entry, ...numbers] = (fields ?? []) as unknown as [string, string, ...string[]];
      const parsed = fields ? parseAddress(entry) : { ok: false as const, reason: 'not a ban with its time' };
      if (!parsed.ok) {
        process.stderr.write(`syncfail2ban-client: skipping ${JSON.stringify(fields ? entry : String(line).slice(0, 100))} from jail ${jail}: ${parsed.reason}\n`);
        continue;
      }
      const [year, month, day, hour, minute, second, length] = numbers.map(Number) as [number, number, number, number, number, number, number];
      // fail2ban prints the start without its fraction of a second: a second later never ends the ban early.
      const bantime = length < 0 ? UNTIL_UNBANNED : remainingBantime(length, localSeconds(year, month, day, hour, minute, second) + 1, now);
      bans.push({ address: parsed.address, bantime });
    }
    return bans;
  } finally {
    client.close();
  }
}

/**
 * A wall-clock time in this host's time zone (the one fail2ban prints in) as seconds since
 * the epoch. In the hour a change from summer time repeats, the later of the two: a ban then
 * ends up to an hour late on peers, never early.
 */
function localSeconds(year: number, month: number, day: number, hour: number, minute: number, second: number): number {
  const first = new Date(year, month - 1, day, hour, minute, second).getTime();
  const later = new Date(first + 3_600_000);
  const repeated = later.getDate() === day && later.getHours() === hour && later.getMinutes() === minute;
  return (repeated ? later.getTime() : first) / 1000;
}
