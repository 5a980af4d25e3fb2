import { expect } from 'chai';
import { createServer, type Server, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { pino } from 'pino';
import { BrokerLink } from '../../../agent/links/broker-link.js';
import { freePort } from '../../support/ports.js';
import { waitFor } from '../../support/wait.js';

/** A broker that answers each connection's SUBSCRIBE with `answer(n)` (n counts connections from 1): a SUBACK's codes, or 'close'. */
async function broker(port: number, answer: (connection: number) => number[] | 'close'): Promise<{ server: Server; sockets: Set<Socket>; connections: () => number }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer((socket) => {
    const connection = ++connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (packet) => {
      if (packet.cmd === 'connect') socket.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }));
      if (packet.cmd === 'subscribe') {
        const granted = answer(connection);
        if (granted === 'close') socket.destroy();
        else socket.write(mqttPacket.generate({ cmd: 'suback', messageId: packet.messageId!, granted }));
      }
    });
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, sockets, connections: () => connections };
}

describe("a broker link's subscription", function () {
  this.timeout(30_000);

  async function withLink(answer: (connection: number) => number[] | 'close', check: (link: BrokerLink, connections: () => number, errors: string[]) => Promise<void>): Promise<void> {
    const port = await freePort();
    const fake = await broker(port, answer);
    const errors: string[] = [];
    const log = pino({ level: 'error' }, { write: (line: string) => errors.push((JSON.parse(line) as { msg: string }).msg) });
    const link = new BrokerLink(`mqtt://127.0.0.1:${port}`, { nodeId: 'here', connectTimeoutS: 5, log, onMessage: () => undefined, reconnectMs: 50 });
    try {
      await link.start();
      await check(link, fake.connections, errors);
    } finally {
      await link.stop();
      for (const socket of fake.sockets) socket.destroy();
      await new Promise((resolve) => fake.server.close(resolve));
    }
  }

  it('a SUBACK that refuses it makes the link "refused", with the fix', async () => {
    await withLink(() => [0x80], async (link, _connections, errors) => {
      await waitFor(() => /refused/.test(link.status().problems[0]?.what ?? ''), 'the link to say the subscription was refused');
      expect(link.connected).to.equal(false);
      expect(link.status().problems[0]!.what).to.match(/the broker refused the subscription to f2b\/\+\/\+/);
      expect(link.status().problems[0]!.fix).to.match(/subscribe/);
      expect(errors.join('\n')).to.match(/refused the subscription/);
    });
  });

  it('a connection that ends before its SUBACK is not called a refusal: the link reconnects and subscribes', async () => {
    await withLink((connection) => (connection === 1 ? 'close' : [1]), async (link, connections, errors) => {
      await waitFor(() => link.connected, 'the link subscribed on its second connection');
      expect(connections()).to.equal(2);
      expect(errors, 'errors logged').to.deep.equal([]);
      expect(link.status().problems).to.deep.equal([]);
    });
  });
});
