import type { Writable } from 'node:stream';
import type { AedesPublishPacket, Client } from 'aedes';
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
 * `maxBytes`, so that a write below the bound never waits. `authorizeForward` is the Aedes
 * hook of that name.
 */
export class QueueBounds {
  private dropped = 0;
  private readonly byClient = new Map<string, number>();
  // Bytes let through but not written yet: Aedes writes them a moment later (setImmediate).
  // Forwards are counted in batches, one per event-loop turn: a batch is settled once every
  // immediate queued while it was open has run, and a client's count then no longer holds.
  private batch = 0;
  private settled = -1;
  private open = false;
  private readonly passing = new WeakMap<Client, { batch: number; bytes: number }>();

  constructor(
    private readonly maxBytes: number,
    private readonly nameOf: (client: Client) => string,
    private readonly refusals: Refusals,
  ) {}

  readonly authorizeForward = (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null => {
    const { maxBytes, byClient } = this;
    const conn = client.conn as Partial<Writable>;
    const queued = (conn.writableLength ?? 0) + this.passingFor(client);
    const size = packet.topic.length + packet.payload.length + 8;
    if (queued > 0 && queued + size >= Math.min(maxBytes, conn.writableHighWaterMark ?? maxBytes)) {
      const name = this.nameOf(client);
      this.dropped += 1;
      const count = (byClient.get(name) ?? 0) + 1;
      byClient.delete(name);
      byClient.set(name, count);
      if (byClient.size > MAX_CLIENTS_TRACKED) byClient.delete(byClient.keys().next().value!);
      this.refusals.refuse('queue-full', `a message for ${name} was dropped: ${queued} bytes already wait for it (mq_max_queued_kib)`, { client: name });
      return null;
    }
    this.pass(client, size);
    return packet;
  };

  stats(): QueueStats {
    return { dropped: this.dropped, droppedByClient: Object.fromEntries(this.byClient) };
  }

  private passingFor(client: Client): number {
    const entry = this.passing.get(client);
    return entry && entry.batch > this.settled ? entry.bytes : 0;
  }

  private pass(client: Client, bytes: number): void {
    const entry = this.passing.get(client);
    // Bytes of an unsettled earlier batch stay until this one settles too.
    if (entry && entry.batch > this.settled) Object.assign(entry, { batch: this.batch, bytes: entry.bytes + bytes });
    else this.passing.set(client, { batch: this.batch, bytes });
    if (this.open) return;
    this.open = true;
    const closing = this.batch;
    setImmediate(() => {
      this.batch += 1;
      this.open = false;
      // Queued after the writes of every forward of the batch (immediates run in order).
      setImmediate(() => {
        this.settled = closing;
      });
    });
  }
}
