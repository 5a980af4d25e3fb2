/** The broker writes what one event-loop turn sends one client in one system call (broker/coalesce-writes.ts). */
import { expect } from 'chai';
import type { Socket } from 'node:net';
import type { Client } from 'aedes';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { startBroker, type RunningBroker } from '../../../broker/broker.js';
import { DEFAULT_BROKER_LIMITS } from '../../../src/config-security.js';
import { connectedClient } from '../../support/mqtt-client.js';
import { freePort } from '../../support/ports.js';
import { waitFor } from '../../support/wait.js';

const MESSAGES = 5;

describe('broker: messages for one client in one turn go out in one write', function () {
  this.timeout(30_000);
  let broker: RunningBroker;
  let subscriber: MqttClient;

  before(async () => {
    broker = await startBroker({
      host: '127.0.0.1',
      port: await freePort(),
      log: pino({ level: 'silent' }),
      security: { users: new Map(), admins: new Set(), limits: DEFAULT_BROKER_LIMITS },
      rateLimit: { perSecond: 100, burst: 100 },
    });
  });

  after(async () => {
    await subscriber?.endAsync(true);
    await broker?.close();
  });

  it(`${MESSAGES} messages published at once reach the subscriber whole, in order, in one writev (fails if Aedes or mqtt-packet stop corking each packet)`, async () => {
    const connected = new Promise<Client>((resolve) => broker.aedes.once('client', resolve));
    subscriber = await connectedClient(`mqtt://127.0.0.1:${broker.port}`);
    const received: string[] = [];
    subscriber.on('message', (_topic, payload) => received.push(payload.toString()));
    await subscriber.subscribeAsync('f2b/#', { qos: 1 });
    // What the broker's socket to this client hands to the kernel: one call per _write or _writev.
    const conn = (await connected).conn as Socket & { _write: (...args: unknown[]) => void; _writev: (...args: unknown[]) => void };
    const calls: number[] = [];
    const writev = conn._writev.bind(conn);
    const write = conn._write.bind(conn);
    conn._writev = (chunks: unknown, callback: unknown) => {
      calls.push((chunks as unknown[]).length);
      writev(chunks, callback);
    };
    conn._write = (chunk: unknown, encoding: unknown, callback: unknown) => {
      calls.push(1);
      write(chunk, encoding, callback);
    };
    const sent = Array.from({ length: MESSAGES }, (_, i) => `203.0.113.${i + 1}`);
    for (const address of sent) broker.aedes.publish({ cmd: 'publish', topic: 'f2b/sshd/ban', payload: Buffer.from(address), qos: 1, retain: false, dup: false }, () => undefined);
    await waitFor(() => received.length === MESSAGES, 'every message at the subscriber');
    expect(received).to.deep.equal(sent);
    expect(calls, 'chunks per write call').to.have.length(1);
    expect(calls[0]).to.be.at.least(MESSAGES);
  });

  it('a CONNACK that refuses the connection still reaches the client, though the broker closes the connection right after it', async () => {
    const refused = await connectedClient(`mqtt://127.0.0.1:${broker.port}`, { clean: false, clientId: 'host-persistent' }).then(
      (client) => client.endAsync(true).then(() => undefined),
      (error: Error & { code?: number }) => error,
    );
    expect(refused?.code, 'CONNACK return code (5: not authorized, a persistent session)').to.equal(5);
  });
});
