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
  // Forwards are counted in batches, one per event-loop turn: a batch is settled once every
  // immediate queued while it was open has run, and a client's count then no longer holds.
  let batch = 0;
  let settled = -1;
  let open = false;
  const passing = new WeakMap<Client, { batch: number; bytes: number }>();
  const passingFor = (client: Client) => {
    const entry = passing.get(client);
    return entry && entry.batch > settled ? entry.bytes : 0;
  };
  const pass = (client: Client, bytes: number) => {
    const entry = passing.get(client);
    // Bytes of an unsettled earlier batch stay until this one settles too.
    if (entry && entry.batch > settled) Object.assign(entry, { batch, bytes: entry.bytes + bytes });
    else passing.set(client, { batch, bytes });
    if (open) return;
    open = true;
    const closing = batch;
    setImmediate(() => {
      batch += 1;
      open = false;
      // Queued after the writes of every forward of the batch (immediates run in order).
      setImmediate(() => {
        settled = closing;
      });
    });
  };
  const forward = aedes.authorizeForward.bind(aedes);
  aedes.authorizeForward = (client, packet) => {
    const conn = client.conn as Partial<Writable>;
    const queued = (conn.writableLength ?? 0) + passingFor(client);
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
    if (forwarded) pass(client, size);
    return forwarded;
  };
  return () => ({ dropped, droppedByClient: Object.fromEntries(byClient) });
}
