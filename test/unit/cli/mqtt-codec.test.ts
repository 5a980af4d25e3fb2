import { expect } from 'chai';
import mqttPacket from 'mqtt-packet';
import { decodePublish, DISCONNECT, encodeConnect, encodePuback, encodePublish, encodeSubscribe, nextFrame, PacketReader } from '../../../cli/mqtt-codec.js';

/** The client's hand-written packets, decoded by mqtt-packet (the codec MQTT.js and Aedes use). */
function decode(bytes: Buffer): mqttPacket.Packet[] {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: mqttPacket.Packet[] = [];
  parser.on('packet', (packet) => packets.push(packet));
  parser.on('error', (error) => {
    throw error;
  });
  parser.parse(bytes);
  return packets;
}

describe("the client's MQTT 3.1.1 codec", () => {
  it('writes CONNECT as mqtt-packet reads it, with and without credentials', () => {
    expect(decode(encodeConnect({ clientId: 'sf2b-cli-1', keepaliveS: 30 }))[0]).to.deep.include({
      cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: 'sf2b-cli-1',
    });
    const withCredentials = decode(encodeConnect({ clientId: 'c', keepaliveS: 300, username: 'web1', password: 'pässword' }))[0] as mqttPacket.IConnectPacket;
    expect(withCredentials.username).to.equal('web1');
    expect(withCredentials.password?.toString()).to.equal('pässword');
    expect(withCredentials.keepalive).to.equal(300);
  });

  it('writes PUBLISH with QoS 1, no retain, for small and multi-byte-length payloads', () => {
    for (const payload of ['203.0.113.7', 'x'.repeat(200), Buffer.alloc(20_000, 0x31)]) {
      const [packet] = decode(encodePublish('f2b/sshd/ban', payload, 513)) as mqttPacket.IPublishPacket[];
      expect(packet).to.deep.include({ cmd: 'publish', topic: 'f2b/sshd/ban', qos: 1, retain: false, messageId: 513 });
      expect(Buffer.from(packet!.payload).equals(Buffer.from(payload))).to.equal(true);
    }
  });

  it('writes DISCONNECT', () => {
    expect(decode(DISCONNECT)[0]).to.deep.include({ cmd: 'disconnect' });
  });

  it('reads CONNACK and PUBACK split at any byte, and skips other packets', () => {
    const stream = Buffer.concat([
      mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }),
      mqttPacket.generate({ cmd: 'pingresp' }),
      mqttPacket.generate({ cmd: 'publish', topic: 'f2b/x/ban', payload: Buffer.alloc(300), qos: 0, retain: false, dup: false }),
      mqttPacket.generate({ cmd: 'puback', messageId: 65_535 }),
      mqttPacket.generate({ cmd: 'connack', returnCode: 5, sessionPresent: false }),
    ]);
    const reader = new PacketReader();
    const seen = [];
    for (const byte of stream) seen.push(...reader.push(Buffer.from([byte])));
    expect(seen).to.deep.equal([
      { type: 'connack', returnCode: 0 },
      { type: 'other', header: 0xd0 },
      { type: 'other', header: 0x30 },
      { type: 'puback', messageId: 65_535 },
      { type: 'connack', returnCode: 5 },
    ]);
  });

  it('refuses a remaining length longer than four bytes', () => {
    expect(() => new PacketReader().push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).to.throw(/malformed remaining length/);
  });

  it('writes SUBSCRIBE and PUBACK (the fleet bench\'s subscribers) as mqtt-packet reads them', () => {
    expect(decode(encodeSubscribe(7, 'f2b/+/+', 1))[0]).to.deep.include({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'f2b/+/+', qos: 1 }] });
    expect(decode(encodePuback(40_000))[0]).to.deep.include({ cmd: 'puback', messageId: 40_000 });
  });

  it('frames a stream and decodes PUBLISH at QoS 0 and 1 as mqtt-packet wrote it, however the bytes arrive', () => {
    const payload = Buffer.alloc(70_000, 0x61);
    const stream = Buffer.concat([
      mqttPacket.generate({ cmd: 'publish', topic: 'f2b/sshd/ban', payload: '{"ip":"11.0.0.1"}', qos: 1, messageId: 300, retain: false, dup: false }),
      mqttPacket.generate({ cmd: 'publish', topic: 'f2b/sshd/snapshot', payload, qos: 0, retain: false, dup: false }),
    ]);
    const first = nextFrame(stream)!;
    expect(decodePublish(first.header, stream.subarray(first.start, first.end))).to.deep.include({ topic: 'f2b/sshd/ban', messageId: 300 });
    expect(decodePublish(first.header, stream.subarray(first.start, first.end)).payload.toString()).to.equal('{"ip":"11.0.0.1"}');
    const second = nextFrame(stream, first.end)!;
    const decoded = decodePublish(second.header, stream.subarray(second.start, second.end));
    expect(decoded).to.deep.include({ topic: 'f2b/sshd/snapshot', messageId: 0 });
    expect(decoded.payload.equals(payload)).to.equal(true);
    expect(second.end).to.equal(stream.length);
    for (const cut of [1, 2, 3, first.end + 2, stream.length - 1]) expect(nextFrame(stream.subarray(0, cut), cut > first.end ? first.end : 0), `cut at ${cut}`).to.equal(null);
  });
});
