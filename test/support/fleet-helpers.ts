import type { StatusReport } from '../../agent/control-protocol.js';
import { requestStatus } from '../../cli/status.js';
import { Fail2banClient } from '../../src/fail2ban/client.js';
import type { SimHost } from './sim-host.js';

/** `count` addresses of 10.<block>.x.y, distinct per block. */
export function addressBlock(block: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `10.${block}.${(i >> 8) & 255}.${i & 255}`);
}

/** The agent's status, asked over its control socket in-process (no client process per poll). */
export async function statusOf(host: SimHost): Promise<StatusReport['status']> {
  return (await requestStatus(host.controlSocket, 10_000)).status;
}

export async function banIn(host: SimHost, jail: string, addresses: string[]): Promise<void> {
  const client = new Fail2banClient(host.fail2ban.socket, { timeoutMs: 120_000 });
  try {
    await client.banIps(jail, addresses);
  } finally {
    await client.close();
  }
}

