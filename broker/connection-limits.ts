import type { Server, Socket } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * Counts open connections per source address and per account. An IPv6 address counts
 * for its /64: one host (or attacker) commonly holds a whole /64.
 */
export class ConnectionCounts {
  private readonly counts = new Map<string, number>();

  /** Takes a place for `key` unless it already holds `max`; the place is given back when `socket` closes. */
  admit(key: string, max: number, socket: Socket): boolean {
    const held = this.counts.get(key) ?? 0;
    if (held >= max) return false;
    this.counts.set(key, held + 1);
    socket.once('close', () => {
      const left = (this.counts.get(key) ?? 1) - 1;
      if (left > 0) this.counts.set(key, left);
      else this.counts.delete(key);
    });
    return true;
  }
}

/** The address a client connected from, as its socket reports it. */
export function remoteAddress(client: { conn: unknown }): string | undefined {
  return (client.conn as Partial<Socket>).remoteAddress;
}

/** The address a connection limit or a share of the login queue is kept for. */
export function sourceKey(remote: string | undefined): string {
  if (remote === undefined || !ipaddr.isValid(remote)) return 'unknown';
  const address = ipaddr.process(remote);
  if (address.kind() === 'ipv4') return address.toString();
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/64`).toString()}/64`;
}

/** Closes, before any TLS handshake or MQTT parsing, connections beyond the per-address limit. */
export function limitConnectionsPerAddress(server: Server, max: number, onRefused: (remote: string) => void): void {
  const counts = new ConnectionCounts();
  // First in line: the broker's own listener then sees the socket already destroyed.
  server.prependListener('connection', (socket: Socket) => {
    const key = sourceKey(socket.remoteAddress);
    if (counts.admit(key, max, socket)) return;
    onRefused(key);
    socket.destroy();
  });
}
