import { Fail2banClient } from '../../src/fail2ban/client.js';
import { startFail2ban } from '../support/fail2ban-server.js';
import { addressBlock, banIn, snapshotsOf } from '../support/fleet-helpers.js';
import { residentMb, settledRss } from '../support/memory.js';
import { measured, part } from '../support/status.js';
import { freePortOn } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';
import { timed } from './stats.js';

const BANS = 100_000;
const IPS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
const TARGET_RATIO = 0.5;
const TARGET_RSS_MB = 80;

/**
 * `-f` of 100,000 addresses through the mesh until every peer's sync jail holds them all,
 * against the raw batched banip ingest of the same 100,000 into one fail2ban jail; and the
 * receiving agents' RSS once they hold 100,000 holdings.
 */
export async function run(): Promise<void> {
  const addresses = [...addressBlock(50, 65_536), ...addressBlock(51, BANS - 65_536)];

  const raw = await startFail2ban({ name: 'bench-raw', jails: [{ name: 'raw-sync', kind: 'sync' }] });
  let rawMs: number;
  try {
    const client = new Fail2banClient(raw.socket, { timeoutMs: 300_000 });
    rawMs = await timed(() => client.banIps('raw-sync', addresses));
    await client.close();
  } finally {
    await raw.stop();
  }

  const port = await freePortOn(IPS);
  const hosts = await Promise.all(IPS.map((ip, index) => SimHost.start({ name: `host-${'abc'[index]}`, ip, port, peers: IPS.filter((peer) => peer !== ip) })));
  try {
    await Promise.all(hosts.map((host) => host.startAgent()));
    await Promise.all(hosts.map((host) => host.waitSubscribed(3)));
    const [a, ...peers] = hosts as [SimHost, ...SimHost[]];
    await banIn(a, 'web', addresses);
    const idleMb = await Promise.all(peers.map(async (peer) => (await residentMb(peer.requireAgent().child.pid!)).now));
    const snapshotMs = await timed(async () => {
      const result = await a.client(['-f', 'web']);
      if (result.code !== 0) throw new Error(`-f failed: ${result.stderr}`);
      await Promise.all(
        peers.map((peer) =>
          waitFor(async () => {
            const snapshots = await snapshotsOf(peer);
            return snapshots.some((s) => s.origin === 'host-a' && s.complete) && measured(part(await peer.agentStatus(), 'sink', 'fail2ban'), 'backlog') === 0;
          }, `the snapshot applied on ${peer.name}`, 600_000, 200),
        ),
      );
    });
    for (const peer of peers) {
      const held = (await peer.banned('web-sync')).length;
      if (held !== BANS) throw new Error(`${peer.name}'s web-sync holds ${held}, not ${BANS}`);
    }
    const rssMb = await Promise.all(peers.map((peer) => settledRss(peer.requireAgent().child.pid!)));
    const memory = await Promise.all(peers.map(async (peer) => part(await peer.agentStatus(), 'memory')));
    const ratio = rawMs / snapshotMs;
    console.log(`measured: ${BANS} addresses, -f through the mesh until both peers' sync jails hold them all, against one raw batched banip of them`);
    console.log(`  raw batched banip ingest into one fail2ban jail:  ${(rawMs / 1000).toFixed(1)} s`);
    console.log(`  -f until complete on both peers:                  ${(snapshotMs / 1000).toFixed(1)} s`);
    console.log(`  ratio (raw / -f): ${(ratio * 100).toFixed(0)}% (target >= ${TARGET_RATIO * 100}%)`);
    console.log(`  agent RSS on the two peers: ${idleMb.map((mb) => `${mb.toFixed(0)} MB`).join(', ')} before, ${rssMb.map((mb) => `${mb.toFixed(0)} MB`).join(', ')} with ${BANS} holdings, once steady for 10 s (target <= ${TARGET_RSS_MB} MB)`);
    console.log(`  their JavaScript heaps then: ${memory.map((m) => `${(measured(m, 'heap') / 1048576).toFixed(0)} MB after ${measured(m, 'trims')} trim(s)`).join(', ')}`);
  } finally {
    await Promise.all(hosts.map((host) => host.stop()));
  }
}

