/** The broker closes at once, whatever connections it holds (an agent's stop waits for it). */
import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import { startBroker } from '../../../broker/broker.js';
import { DEFAULT_BROKER_LIMITS } from '../../../src/config-security.js';
import { connectedClient } from '../../support/mqtt-client.js';
import { freePort } from '../../support/ports.js';
import { waitFor } from '../../support/wait.js';

/** Well below Aedes's connect timeout (30 s), which a connection without CONNECT used to hold the close for. */
const CLOSE_DEADLINE_MS = 5_000;

describe('broker: close ends every connection, those that never sent CONNECT too', function () {
  this.timeout(30_000);

  it('closes within seconds while a client is connected and another connection is silent, and then refuses connections', async () => {
    const port = await freePort();
    const broker = await startBroker({
      host: '127.0.0.1',
      port,
      log: pino({ level: 'silent' }),
      security: { users: new Map(), admins: new Set(), limits: DEFAULT_BROKER_LIMITS },
      rateLimit: { perSecond: 100, burst: 100 },
    });
    const client = await connectedClient(`mqtt://127.0.0.1:${port}`);
    const silent: Socket = connect(port, '127.0.0.1');
    await new Promise((resolve) => silent.once('connect', resolve));
    const silentClosed = new Promise((resolve) => silent.once('close', resolve));
    silent.on('error', () => undefined);
    await waitFor(() => broker.aedes.connectedClients === 1, 'the client connected');

    const closed = await Promise.race([broker.close().then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), CLOSE_DEADLINE_MS))]);
    expect(closed, `the broker closed within ${CLOSE_DEADLINE_MS} ms`).to.equal(true);
    await silentClosed;
    await client.endAsync(true);
    const refused = await new Promise<boolean>((resolve) => {
      const late = connect(port, '127.0.0.1');
      late.once('connect', () => resolve(false));
      late.once('error', () => resolve(true));
    });
    expect(refused, 'a connection after close is refused').to.equal(true);
  });
});
