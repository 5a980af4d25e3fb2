import { expect } from 'chai';
import { createServer, type Server, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { pino } from 'pino';
import { BrokerLink } from '../../../agent/links/broker-link.js';
import { freePort } from '../../support/ports.js';
import { waitFor } from '../../support/wait.js';

/**
 * A broker that never answers a ping (as when its answer waits behind a burst of messages),
 * and publishes an event every 100 ms while `publishing` is true.
 */
async function pingDeafBroker(port: number): Promise<{ server: Server; sockets: Set<Socket>; publishing: { on: boolean }; pings: { count: number } }> {
  const sockets = new Set<Socket>();
  const publishing = { on: true };
  const pings = { count: 0 };
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let timer: NodeJS.Timeout | undefined;
    socket.on('close', () => clearInterval(timer));
    parser.on('packet', (packet) => {
      if (packet.cmd === 'connect') socket.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }));
      if (packet.cmd === 'subscribe') {
        socket.write(mqttPacket.generate({ cmd: 'suback', messageId: packet.messageId!, granted: [0] }));
        let n = 0;
        timer = setInterval(() => {
          if (publishing.on) socket.write(mqttPacket.generate({ cmd: 'publish', topic: 'f2b/sshd/ban', payload: `203.0.113.${++n % 250}`, qos: 0, retain: false, dup: false }));
        }, 100);
      }
      // A ping is counted, never answered.
      if (packet.cmd === 'pingreq') pings.count += 1;
    });
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, sockets, publishing, pings };
}

describe('a broker link and its keepalive', function () {
  this.timeout(30_000);

  it('a broker that keeps delivering stays connected though it never answers a ping, and still gets pings; once silent, it is given up', async () => {
    const port = await freePort();
    const broker = await pingDeafBroker(port);
    let received = 0;
    let downs = 0;
    const link = new BrokerLink(`mqtt://127.0.0.1:${port}`, {
      nodeId: 'here',
      connectTimeoutS: 5,
      log: pino({ level: 'silent' }),
      onMessage: () => (received += 1),
      onDown: () => (downs += 1),
      reconnectMs: 0,
      // Without an answer, MQTT.js gives up 1.5 keepalives after its last ping was due: 1.5 s here.
      mqtt: { keepalive: 1 },
    });
    try {
      await link.start();
      await waitFor(() => link.connected, 'the link subscribed');
      // 4 s of messages without a single ping answer: more than twice the keepalive's limit.
      await waitFor(() => received >= 40, '40 messages');
      expect(downs, 'the link gave up on a broker that was delivering').to.equal(0);
      expect(link.connected).to.equal(true);
      // The messages come at QoS 0, so the link acknowledges nothing: it must still ping, or the broker would drop it.
      expect(broker.pings.count, 'pings sent').to.be.at.least(2);
      broker.publishing.on = false;
      await waitFor(() => downs === 1, 'the link to give up on the silent broker', 10_000);
      expect(link.status().details.last_error).to.match(/keepalive timeout/i);
    } finally {
      await link.stop();
      for (const socket of broker.sockets) socket.destroy();
      await new Promise((resolve) => broker.server.close(resolve));
    }
  });
});
