import type { SnapshotResult } from '../../agent/fleet/snapshot-receiver.js';
import { Fail2banClient } from '../../src/fail2ban/client.js';
import type { SimHost } from './sim-host.js';
import { measuredBy, part } from './status.js';

/** `count` addresses of 10.<block>.x.y, distinct per block. */
export function addressBlock(block: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `10.${block}.${(i >> 8) & 255}.${i & 255}`);
}

/** A snapshot as the status shows it. */
export type SnapshotSeen = Pick<SnapshotResult, 'origin' | 'jail' | 'complete' | 'partsReceived' | 'parts' | 'addresses' | 'added' | 'released'>;

/** The last snapshots the host's fleet state received, as its status shows them. */
export async function snapshotsOf(host: SimHost): Promise<SnapshotSeen[]> {
  return Object.entries(part(await host.agentStatus(), 'fleet').details).flatMap(([key, value]) => {
    const [kind, origin, jail] = key.split(' ');
    if (kind !== 'snapshot' || typeof value !== 'object' || value === null || !('fields' in value)) return [];
    const { complete, parts_received: partsReceived, parts, addresses, added, released } = value.fields as Record<string, number | boolean>;
    return [{ origin: origin!, jail: jail!, complete, partsReceived, parts, addresses, added, released } as SnapshotSeen];
  });
}

export async function banIn(host: SimHost, jail: string, addresses: string[]): Promise<void> {
  const client = new Fail2banClient(host.fail2ban.socket, { timeoutMs: 120_000 });
  try {
    await client.banIps(jail, addresses);
  } finally {
    await client.close();
  }
}

/** How many bans the host's fleet state holds from `origin` (over all jails). */
export async function holdingsOf(host: SimHost, origin: string): Promise<number | undefined> {
  return measuredBy(part(await host.agentStatus(), 'fleet'), 'holdings_by_origin')[origin];
}
