import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * What one broker instance of a clustered hub puts on the Redis bus for the others: an MQTT
 * message (topic, payload, QoS, and Aedes' broker id and counter, by which it delivers each
 * message once), with the sender's sequence number and clock, signed with cluster_key.
 *
 *     "SF2B" 0x01 | HMAC-SHA256(key, rest) (32 bytes) | header length (uint32 BE) | header (JSON) | payload
 *
 * The signature is checked before anything else is read, so whoever can publish into Redis
 * but lacks the key can neither forge a message nor change one; replays are for the receiver
 * to refuse (the sequence number and time).
 */
export interface BusMessage {
  /** The sending instance's broker id (a UUID, new at each start). */
  sender: string;
  /** Counts up from 1 on each sender: a receiver refuses a number it has seen. */
  seq: number;
  /** The sender's clock (ms since the epoch) when it sent the message. */
  time: number;
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  /** The counter by which Aedes on the receivers delivers the message once (the sender's seq: it rises in the order messages cross). */
  counter: number;
}

export type OpenedFrame = { ok: true; message: BusMessage } | { ok: false; reason: 'cluster-unsigned' | 'cluster-malformed'; detail: string };

const MAGIC = Buffer.from('SF2B\u0001', 'latin1');
const MAC_BYTES = 32;
const HEADER_AT = MAGIC.length + MAC_BYTES;
/** A header is a few hundred bytes; a topic is at most a few levels of 64 characters. */
const MAX_HEADER_BYTES = 4096;

export function sealFrame(key: string, { payload, ...header }: BusMessage): Buffer {
  const headerBytes = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(headerBytes.length);
  const mac = createHmac('sha256', key).update(length).update(headerBytes).update(payload).digest();
  return Buffer.concat([MAGIC, mac, length, headerBytes, payload]);
}

/** The message in `frame` when it is signed with `key` and well formed. */
export function openFrame(key: string, frame: Buffer): OpenedFrame {
  if (frame.length < HEADER_AT + 4 || !frame.subarray(0, MAGIC.length).equals(MAGIC)) {
    return { ok: false, reason: 'cluster-unsigned', detail: 'a message on the cluster bus that is not an instance\'s signed frame' };
  }
  const expected = createHmac('sha256', key).update(frame.subarray(HEADER_AT)).digest();
  if (!timingSafeEqual(expected, frame.subarray(MAGIC.length, HEADER_AT))) {
    return { ok: false, reason: 'cluster-unsigned', detail: 'a message on the cluster bus whose signature does not match cluster_key' };
  }
  const malformed = (why: string): OpenedFrame => ({ ok: false, reason: 'cluster-malformed', detail: `a signed message on the cluster bus that is malformed (${why}); is every instance the same version?` });
  const headerLength = frame.readUInt32BE(HEADER_AT);
  if (headerLength > MAX_HEADER_BYTES || HEADER_AT + 4 + headerLength > frame.length) return malformed('header length');
  let header: unknown;
  try {
    header = JSON.parse(frame.subarray(HEADER_AT + 4, HEADER_AT + 4 + headerLength).toString('utf8'));
  } catch {
    return malformed('header is not JSON');
  }
  const { sender, seq, time, topic, qos, counter } = (header ?? {}) as Record<string, unknown>;
  if (typeof sender !== 'string' || sender.length === 0 || sender.length > 64) return malformed('sender');
  if (!isCount(seq) || !isCount(counter) || typeof time !== 'number' || !Number.isFinite(time)) return malformed('sequence, counter or time');
  if (typeof topic !== 'string' || topic.length === 0 || topic.length > 1024) return malformed('topic');
  if (qos !== 0 && qos !== 1 && qos !== 2) return malformed('qos');
  return { ok: true, message: { sender, seq, time, topic, qos, counter, payload: frame.subarray(HEADER_AT + 4 + headerLength) } };
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
