import type { Config } from '../src/config.js';
import { requestOwnSnapshots } from '../src/control-protocol.js';
import { Fail2banClient, Fail2banError } from '../src/fail2ban/client.js';
import { encodeSnapshot, newSnapshotId, snapshotTopic } from '../src/snapshot.js';
import { readActionListing, readBanListing, type JailBan, type SkippedLine } from './ban-listing.js';
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

/**
 * fail2ban answers `get <jail> banip --with-time` for 100,000 bans in 2 to 6 s (more than a
 * plain list): -f waits for it this long at least, whatever connection_timeout says.
 */
const MIN_READ_TIMEOUT_MS = 120_000;

/** The name fail2ban gives the Python action (syncfail2ban.py) in a jail. */
const PYTHON_ACTION = 'syncfail2ban';

/**
 * The jail's current bans from the local fail2ban, canonicalised, each with the time it has
 * left; entries that are not addresses are reported and skipped. From the jail's syncfail2ban
 * Python action when it has one (its listing: 100,000 bans in about a fifth of the time), else
 * from fail2ban's own listing with times.
 */
export async function readJailBans(socket: string, jail: string, timeoutMs: number): Promise<JailBan[]> {
  const client = new Fail2banClient(socket, { timeoutMs: Math.max(timeoutMs, MIN_READ_TIMEOUT_MS) });
  const skip = ({ entry, reason }: SkippedLine) => process.stderr.write(`syncfail2ban-client: skipping ${JSON.stringify(entry)} from jail ${jail}: ${reason}\n`);
  try {
    const listing = await actionListing(client, jail);
    if (listing !== undefined) return readActionListing(listing, Date.now(), skip);
    const reply = await client.command(['get', jail, 'banip', '--with-time']);
    if (!Array.isArray(reply)) throw new Error(`fail2ban answered "get ${jail} banip --with-time" with something that is not a list`);
    return readBanListing(reply, Date.now(), skip);
  } finally {
    client.close();
  }
}

/** The listing of the jail's Python action, or undefined when the jail has none (or one from before it listed). */
async function actionListing(client: Fail2banClient, jail: string): Promise<string | undefined> {
  try {
    const reply = await client.command(['set', jail, 'action', PYTHON_ACTION, 'listing']);
    return typeof reply === 'string' ? reply : undefined;
  } catch (error) {
    if (error instanceof Fail2banError && error.kind === 'rejected') return undefined;
    throw error;
  }
}
