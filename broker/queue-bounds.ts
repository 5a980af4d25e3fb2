import type { Writable } from 'node:stream';
import type { Aedes, Client } from 'aedes';
import type { Refusals } from '../src/refusals.js';

/** Clients whose drops are told apart; beyond that, the longest quiet one is forgotten (the total still counts it). */
const MAX_CLIENTS_TRACKED = 1_000;

export interface QueueStats {
  /** Messages dropped because their client's queue was full. */
  dropped: number;
  /** Per client (account, or source address when anonymous), most recent droppers last. */
  droppedByClient: Record<string, number>;
}

/**
 * Bounds what waits for one client: a message for a client whose connection already holds
 * `maxBytes` unsent is dropped and counted for it, so a subscriber that stops reading can
 * neither grow the broker's memory nor hold up delivery to the others (Aedes waits for a
 * full socket to drain before it moves on). The sockets' highWaterMark must be at least
 * `maxBytes`, so that a write below the bound never waits.
 */
export function installQueueBounds(aedes: Aedes, maxBytes: number, nameOf: (client: Client) => string, refusals: Refusals): () => QueueStats {
  let dropped = 0;
  const byClient = new Map<string, number>();
  // Bytes let through but not written yet: Aedes writes them a moment later (setImmediate).
  const passing = new WeakMap<Client, number>();
  const forward = aedes.authorizeForward.bind(aedes);
  aedes.authorizeForward = (client, packet) => {
    const conn = client.conn as Partial<Writable>;
    const queued = (conn.writableLength ?? 0) + (passing.get(client) ?? 0);
    const size = packet.topic.length + packet.payload.length + 8;
    if (queued > 0 && queued + size >= Math.min(maxBytes, conn.writableHighWaterMark ?? maxBytes)) {
      const name = nameOf(client);
      dropped += 1;
      const count = (byClient.get(name) ?? 0) + 1;
      byClient.delete(name);
      byClient.set(name, count);
      if (byClient.size > MAX_CLIENTS_TRACKED) byClient.delete(byClient.keys().next().value!);
      refusals.refuse('queue-full', `a message for ${name} was dropped: ${queued} bytes already wait for it (mq_max_queued_kib)`, { client: name });
      return null;
    }
    const forwarded = forward(client, packet);
    if (forwarded) {
      passing.set(client, (passing.get(client) ?? 0) + size);
      // Runs in the next round of immediates, after the one in which Aedes writes the packet.
      setImmediate(() => setImmediate(() => passing.set(client, (passing.get(client) ?? size) - size)));
    }
    return forwarded;
  };
  return () => ({ dropped, droppedByClient: Object.fromEntries(byClient) });
}
