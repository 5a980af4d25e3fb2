/**
 * The four MQTT 3.1.1 packets a publisher needs, written by hand: the client runs once per
 * ban, and mqtt-packet's parser alone takes ~100 ms to load (it pulls in bl and
 * readable-stream). test/cli/mqtt-codec.test.ts checks these bytes against mqtt-packet.
 */

export interface ConnectOptions {
  clientId: string;
  keepaliveS: number;
  username?: string;
  password?: string;
}

export function encodeConnect({ clientId, keepaliveS, username, password }: ConnectOptions): Buffer {
  let flags = 0x02; // clean session
  if (username !== undefined) flags |= 0x80;
  if (password !== undefined) flags |= 0x40;
  const keepalive = Buffer.from([keepaliveS >> 8, keepaliveS & 0xff]);
  const body = [string('MQTT'), Buffer.from([4, flags]), keepalive, string(clientId)];
  if (username !== undefined) body.push(string(username));
  if (password !== undefined) body.push(string(password));
  return packet(0x10, body);
}

export function encodePublish(topic: string, payload: string | Buffer, messageId: number): Buffer {
  const id = Buffer.from([messageId >> 8, messageId & 0xff]);
  return packet(0x32, [string(topic), id, Buffer.isBuffer(payload) ? payload : Buffer.from(payload)]); // QoS 1, no retain
}

export const DISCONNECT = Buffer.from([0xe0, 0x00]);

export type Incoming = { type: 'connack'; returnCode: number } | { type: 'puback'; messageId: number } | { type: 'other'; header: number };

/** Splits a byte stream into packets; throws on a malformed length. */
export class PacketReader {
  private buffered: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Incoming[] {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    const packets: Incoming[] = [];
    for (let frame; (frame = nextFrame(this.buffered)); ) {
      const body = this.buffered.subarray(frame.start, frame.end);
      this.buffered = this.buffered.subarray(frame.end);
      if (frame.header === 0x20 && body.length === 2) packets.push({ type: 'connack', returnCode: body[1]! });
      else if (frame.header === 0x40 && body.length === 2) packets.push({ type: 'puback', messageId: (body[0]! << 8) | body[1]! });
      else packets.push({ type: 'other', header: frame.header });
    }
    return packets;
  }
}

/** Where the packet at `offset` lies: its first byte, and its body from `start` to `end`; null until all of it is there. */
export function nextFrame(buffered: Buffer, offset = 0): { header: number; start: number; end: number } | null {
  let length = 0;
  let index = offset + 1;
  for (let multiplier = 1; ; multiplier *= 128, index++) {
    if (index >= buffered.length) return null;
    if (index - offset > 4) throw new Error('malformed remaining length');
    const byte = buffered[index]!;
    length += (byte & 0x7f) * multiplier;
    if (!(byte & 0x80)) break;
  }
  const end = index + 1 + length;
  return end > buffered.length ? null : { header: buffered[offset]!, start: index + 1, end };
}

// What a subscriber needs besides the above (the fleet bench's simulated hosts use it; the
// client does not import it, so its bundle leaves it out).

/** SUBSCRIBE to one topic filter at `qos`. */
export function encodeSubscribe(messageId: number, filter: string, qos: 0 | 1): Buffer {
  return packet(0x82, [Buffer.from([messageId >> 8, messageId & 0xff]), string(filter), Buffer.from([qos])]);
}

export function encodePuback(messageId: number): Buffer {
  return Buffer.from([0x40, 0x02, messageId >> 8, messageId & 0xff]);
}

/** The topic, packet id (0 at QoS 0) and payload of a PUBLISH body (`header` its first byte). */
export function decodePublish(header: number, body: Buffer): { topic: string; messageId: number; payload: Buffer } {
  const topicEnd = 2 + ((body[0]! << 8) | body[1]!);
  const qos = (header >> 1) & 3;
  const messageId = qos > 0 ? (body[topicEnd]! << 8) | body[topicEnd + 1]! : 0;
  return { topic: body.toString('utf8', 2, topicEnd), messageId, payload: body.subarray(qos > 0 ? topicEnd + 2 : topicEnd) };
}

function string(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > 0xffff) throw new RangeError('MQTT strings are at most 65535 bytes');
  return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
}

function packet(header: number, parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const length: number[] = [];
  let remaining = body.length;
  do {
    let byte = remaining % 128;
    remaining = Math.floor(remaining / 128);
    if (remaining > 0) byte |= 0x80;
    length.push(byte);
  } while (remaining > 0);
  return Buffer.concat([Buffer.from([header, ...length]), body]);
}
