import { remainingBantime, UNTIL_UNBANNED } from '../src/bantime.js';
import type { Config } from '../src/config.js';
import { requestOwnSnapshots } from '../src/control-protocol.js';
import { Fail2banClient } from '../src/fail2ban/client.js';
import { parseAddress } from '../src/ip.js';
import { encodeSnapshot, newSnapshotId, snapshotTopic } from '../src/snapshot.js';
import type { Message } from './mqtt-publish.js';

/** How often -f asks the agent whether its snapshot came back. */
const ASK_EVERY_MS = 200;

/**
 * `-f <jail>`: publishes a snapshot of what the jail bans now, then says whether it was taken
 * whole, as far as this host can know: the broker acknowledged every part (or publishing
 * failed), and this host's agent, which subscribes to the same broker, received every part
 * back through it (its intake checks each part's envelope and rate limit as every peer's does;
 * the entries, which reach nothing there, it leaves to the peers).
 * Each peer's own copy shows in its status ("snapshot <node> <jail>"). Returns the exit code:
 * 1 when the snapshot was not taken whole.
 */
export async function fullSync(config: Config, jail: string, publish: (messages: Message[]) => Promise<void>): Promise<number> {
  const timeoutMs = config.connectionTimeoutS * 1000;
  const bans = await readJailBans(config.fail2banSocket, jail, timeoutMs);
  const addresses = bans.map((ban) => ban.address);
  const id = newSnapshotId();
  const parts = encodeSnapshot(config.nodeId, addresses, bans.map((ban) => ban.bantime), id);
  await publish(parts.map((payload) => ({ topic: snapshotTopic(jail), payload })));
  const published = `published a snapshot of jail ${jail}: ${addresses.length} address(es) in ${parts.length} part(s), every part acknowledged by the broker`;
  const back = await cameBack(config, jail, id, parts.length, timeoutMs);
  const quota = config.holdingLimits.perOrigin;
  if (back.whole === undefined) {
    process.stdout.write(`${published}\n`);
    process.stderr.write(`syncfail2ban-client: could not ask this host's agent whether the snapshot came back whole (${back.why}); each peer's status shows what it took ("snapshot ${config.nodeId} ${jail}")\n`);
  } else if (!back.whole) {
    process.stdout.write(`${published}\n`);
    process.stderr.write(
      `syncfail2ban-client: the snapshot was not taken whole: this host's agent received ${back.partsReceived} of its ${parts.length} part(s) back through the broker within ${timeoutMs / 1000} s, so peers likely missed parts too, and a peer that misses a part releases nothing; see the agent's log (refused: rate-limited?) and run syncfail2ban-client -f ${jail} again\n`,
    );
    return 1;
  } else {
    process.stdout.write(`${published}, and received back whole by this host's agent\n`);
  }
  if (addresses.length > quota) {
    process.stderr.write(
      `syncfail2ban-client: the snapshot was not taken whole: it holds ${addresses.length} addresses, more than max_holdings_per_origin (${quota}); peers with that quota keep ${quota} of them and refuse the rest. Raise max_holdings_per_origin on every agent if this host really bans that many\n`,
    );
    return 1;
  }
  return 0;
}

/** Whether this host's agent received snapshot `id` of the jail whole, asked until `timeoutMs`; `whole` undefined when it cannot be asked. */
async function cameBack(config: Config, jail: string, id: string, parts: number, timeoutMs: number): Promise<{ whole: true } | { whole: false; partsReceived: number } | { whole: undefined; why: string }> {
  const deadline = Date.now() + timeoutMs;
  let partsReceived = 0;
  for (;;) {
    let snapshot;
    try {
      snapshot = (await requestOwnSnapshots(config.controlSocket, Math.max(1_000, deadline - Date.now()))).find((own) => own.jail === jail);
    } catch (error) {
      return { whole: undefined, why: (error as Error).message };
    }
    if (snapshot?.id === id) {
      if (snapshot.complete) return { whole: true };
      partsReceived = snapshot.partsReceived;
    }
    if (Date.now() >= deadline) return { whole: false, partsReceived: Math.min(partsReceived, parts) };
    await new Promise((resolve) => setTimeout(resolve, ASK_EVERY_MS));
  }
}

export interface JailBan {
  /** Canonical text. */
  address: string;
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
    // fail2ban lists bans in the order they came, so a burst's share their start: its local time is worked out once.
    let startKey = -1;
    let startSeconds = 0;
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
      const key = ((((year * 100 + month) * 100 + day) * 100 + hour) * 100 + minute) * 100 + second;
      if (length >= 0 && key !== startKey) {
        startKey = key;
        startSeconds = localSeconds(year, month, day, hour, minute, second);
      }
      const bantime = length < 0 ? UNTIL_UNBANNED : remainingBantime(length, startSeconds + 1, now);
      bans.push({ address: parsed.address.text, bantime });
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
