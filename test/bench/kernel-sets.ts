import { readFile } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { Fail2banClient } from '../../src/fail2ban/client.js';
import { addressBlock, banIn } from '../support/fleet-helpers.js';
import { NetNamespace } from '../support/netns.js';
import { BIN } from '../support/paths.js';
import { run as runProgram } from '../support/run.js';
import { waitForSetNames } from '../support/nft-sets.js';
import { freePort } from '../support/ports.js';
import { SimHost, type HostOptions } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';
import { timed } from './stats.js';

const BANS = 100_000;
/** Through a sync jail with a real banaction, 100,000 would take about an hour: this many, and the rate. */
const ACTION_BANS = 1_000;
/** Through a sync jail without action (what the snapshot benchmark measures), for the same comparison. */
const NO_ACTION_BANS = 10_000;
const TARGET_S = 3;
const A = '127.0.0.2';
const PEER = '127.0.0.3';

/**
 * The fleet's bans on a peer, in one run: a 100,000-address -f from A (its jail has the Python
 * action, as jail.local recommends, and -f reads the jail through it) to B, whose nftables sink
 * puts them into a kernel set; the same path into C's sync jail whose banaction is
 * fail2ban's own iptables-multiport (ACTION_BANS of them, and the rate), and what fail2ban
 * then does at its restart (it replays the sync jail: the banaction again for every ban);
 * and into a sync jail without action (NO_ACTION_BANS), the figure admins must not expect
 * with an action. Each fleet runs inside a network namespace of its own.
 */
export async function run(): Promise<void> {
  const addresses = [...addressBlock(70, 65_536), ...addressBlock(71, BANS - 65_536)];
  const iptablesAction = {
    action: 'iptables-multiport[name=sync]',
    files: Object.fromEntries(await Promise.all(['iptables-multiport', 'iptables'].map(async (name) => [name, await readFile(`/etc/fail2ban/action.d/${name}.conf`, 'utf8')] as const))),
  };
  // From the peer's log (each nft run and each batch into fail2ban logs its count), not its status: with
  // 100,000 holdings a status costs the busy agent 20 to 80 ms, and asked every 20 ms it would take most of its time.
  const applied = (sink: string, count: number) => async (peer: SimHost) => loggedBans(peer, sink) >= count;

  const nft = await throughFleet(addresses, { fail2ban: false, extra: ['nft_sync = true', 'nft_jails = web'] }, applied('nftables', BANS), async (peer, ns) => {
    await waitForSetNames(ns, 'hosts_v4', BANS);
    return peerPhases(peer);
  }, true);

  const iptables = await throughFleet(addresses.slice(0, ACTION_BANS), { jails: { web: 'web-sync' }, syncJailAction: iptablesAction }, applied('fail2ban', ACTION_BANS), async (peer, ns) => {
    const rules = await iptablesRules(ns);
    if (rules !== ACTION_BANS) throw new Error(`C's iptables chain holds ${rules} rules, not ${ACTION_BANS}`);
    // At its start fail2ban restores the sync jail's bans from its database and runs the banaction for each again.
    await peer.fail2ban.stopProcess();
    return timed(async () => {
      await peer.fail2ban.startProcess();
      await waitFor(async () => (await iptablesRules(ns)) === ACTION_BANS, 'the restored bans back in iptables', 600_000, 100);
    });
  });

  const plain = await throughFleet(addresses.slice(0, NO_ACTION_BANS), { jails: { web: 'web-sync' } }, applied('fail2ban', NO_ACTION_BANS), async () => undefined);

  const rate = (count: number, ms: number) => (count / ms) * 1000;
  const nftRate = rate(BANS, nft.completeMs);
  const iptablesRate = rate(ACTION_BANS, iptables.completeMs);
  const replayMs = iptables.after;
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const { nftRuns, lastPartAt, firstAppliedAt } = nft.after;
  const listing = nft.listing!;
  console.log('measured: -f of a jail from host A until the peer applied every address (each fleet in a network namespace of its own)');
  console.log(`  B, nftables sink, ${BANS} addresses (load average ${nft.load.map((load) => load.toFixed(1)).join(', ')} at -f on ${availableParallelism()} cores):`);
  console.log(`    A's -f (the jail's list from its Python action, then published): ${s(nft.clientMs)}`);
  console.log(`      the list alone, just before: the action's ${s(listing.actionMs)}; fail2ban's own with times ${s(listing.withTimeMs)}, without ${s(listing.withoutMs)}`);
  console.log(`    B took every part (its fleet state and journal):       ${s(lastPartAt - nft.startedAt)} after -f started`);
  console.log(`    B's first and last nft run done:                       ${s(firstAppliedAt - nft.startedAt)}, ${s(nftRuns.lastAt - nft.startedAt)} after -f started (${nftRuns.count} runs)`);
  console.log(`    complete in B's kernel set, after -f started:          ${s(nft.completeMs)} (target <= ${TARGET_S} s), ${nftRate.toFixed(0)} bans/s`);
  console.log(`    of that, after B took the last part:                   ${s(nft.completeAt - lastPartAt)}`);
  console.log(`  C, sync jail with iptables-multiport, ${ACTION_BANS} addresses:   ${(iptables.completeMs / 1000).toFixed(1)} s, ${iptablesRate.toFixed(0)} bans/s: ${BANS} would take ${(BANS / iptablesRate / 60).toFixed(0)} min`);
  console.log(`    fail2ban's restart, replaying them through the banaction: ${(replayMs / 1000).toFixed(1)} s: for ${BANS}, ${((replayMs / ACTION_BANS) * BANS / 60_000).toFixed(0)} min`);
  console.log(`  C', sync jail without action, ${NO_ACTION_BANS} addresses:       ${(plain.completeMs / 1000).toFixed(1)} s, ${rate(NO_ACTION_BANS, plain.completeMs).toFixed(0)} bans/s`);
  console.log(`  ratio, bans per second into B's kernel set / into C's sync jail with iptables-multiport: ${(nftRate / iptablesRate).toFixed(0)}x`);
}

interface FleetRun<T> {
  /** A's -f: reading the jail from fail2ban and publishing the snapshot. */
  clientMs: number;
  /** From -f's start until the peer applied every address. */
  completeMs: number;
  /** When -f started and when the peer was seen complete (ms since the epoch). */
  startedAt: number;
  completeAt: number;
  /** The load averages (1, 5, 15 min) as -f started. */
  load: number[];
  /** fail2ban's listing on its own just before -f, when asked for. */
  listing?: { actionMs: number; withTimeMs: number; withoutMs: number };
  after: T;
}

/** The listings of A's jail on their own: the Python action's (what -f reads), and fail2ban's with and without the times -f needs. */
async function listingAlone(host: SimHost): Promise<{ actionMs: number; withTimeMs: number; withoutMs: number }> {
  const client = new Fail2banClient(host.fail2ban.socket, { timeoutMs: 600_000 });
  try {
    const actionMs = await timed(() => client.command(['set', 'web', 'action', 'syncfail2ban', 'listing']));
    const withTimeMs = await timed(() => client.command(['get', 'web', 'banip', '--with-time']));
    const withoutMs = await timed(() => client.command(['get', 'web', 'banip']));
    return { actionMs, withTimeMs, withoutMs };
  } finally {
    client.close();
  }
}

/** The bans the peer's sink says it applied, in its log so far. */
function loggedBans(peer: SimHost, sink: string): number {
  let bans = 0;
  for (const line of peer.requireAgent().logLines()) if (line.sink === sink && typeof line.bans === 'number' && String(line.msg).startsWith('applied ')) bans += line.bans;
  return bans;
}

/** What B's log says of the snapshot: when its fleet state had taken every part, and when its nft runs were done (the sink logs each). */
function peerPhases(peer: SimHost): { lastPartAt: number; firstAppliedAt: number; nftRuns: { count: number; lastAt: number } } {
  const lines = peer.requireAgent().logLines();
  const complete = lines.find((line) => String(line.msg).startsWith('snapshot of web from '));
  const runs = lines.filter((line) => line.sink === 'nftables' && String(line.msg).startsWith('applied ')).map((line) => line.time as number);
  if (!complete || runs.length === 0) throw new Error("B's log does not show the snapshot complete and applied");
  return { lastPartAt: complete.time as number, firstAppliedAt: runs[0]!, nftRuns: { count: runs.length, lastAt: runs.at(-1)! } };
}

/**
 * A fleet of A and a peer (`peerOptions`) in a namespace of their own: bans `addresses` in A's
 * jail `web`, times A's `-f web` until `applied` says the peer has them all, then runs `afterwards`.
 */
async function throughFleet<T>(
  addresses: string[],
  peerOptions: Partial<HostOptions>,
  applied: (peer: SimHost) => Promise<boolean>,
  afterwards: (peer: SimHost, ns: NetNamespace) => Promise<T>,
  measureListing = false,
): Promise<FleetRun<T>> {
  const ns = await NetNamespace.create();
  const port = await freePort();
  const a = await SimHost.start({ name: 'bench-a', ip: A, port, peers: [PEER], netns: ns, extra: ['connection_timeout = 120'] });
  const peer = await SimHost.start({ name: 'bench-peer', ip: PEER, port, peers: [A], netns: ns, ...peerOptions });
  try {
    await Promise.all([a.startAgent(), peer.startAgent()]);
    await Promise.all([a.waitSubscribed(2), peer.waitSubscribed(2)]);
    await banIn(a, 'web', addresses);
    // A's jail has the Python action, as jail.local recommends: added after its bans, so that they reach the peer through -f only.
    await a.fail2ban.cli('set', 'web', 'addaction', 'syncfail2ban', join(a.fail2ban.confDir, 'action.d/syncfail2ban.py'), JSON.stringify({ config: a.configPath }));
    const listing = measureListing ? await listingAlone(a) : undefined;
    let clientMs = 0;
    let completeAt = 0;
    const load = loadavg();
    const startedAt = Date.now();
    const client = runProgram(...a.inside(process.execPath, [BIN.client, '--config', a.configPath, '-f', 'web']), 600_000).then((result) => {
      clientMs = Date.now() - startedAt;
      if (result.code !== 0) throw new Error(`-f failed (exit ${result.code}): ${result.stderr}`);
    });
    // A failing -f ends the wait at once. The peer may be complete before -f ends (it waits for its own agent to have the snapshot back).
    await Promise.race([
      waitFor(() => applied(peer), `${addresses.length} addresses applied on the peer`, 3_600_000, 20).then(() => (completeAt = Date.now())),
      client.then(() => new Promise(() => undefined)),
    ]);
    await client;
    return { clientMs, completeMs: completeAt - startedAt, startedAt, completeAt, load, ...(listing ? { listing } : {}), after: await afterwards(peer, ns) };
  } finally {
    await Promise.all([a.stop(), peer.stop()]);
    await ns.close();
  }
}

/** The ban rules fail2ban's iptables-multiport holds in its chain (f2b-sync). */
async function iptablesRules(ns: NetNamespace): Promise<number> {
  const result = await ns.run('iptables', ['-w', '-S', 'f2b-sync']);
  return result.code === 0 ? result.stdout.split('\n').filter((line) => / -s \S+ -j REJECT/.test(line)).length : 0;
}
