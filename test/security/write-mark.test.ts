/** The broker's sockets take a client's whole queue bound (mq_max_queued_kib) before a write waits for drain, over TLS too. */
import { expect } from 'chai';
import { readFile, rm } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { Client } from 'aedes';
import { pino } from 'pino';
import { startBroker } from '../../broker/broker.js';
import { DEFAULT_BROKER_LIMITS } from '../../src/config-security.js';
import { makeTestCa } from '../support/certs.js';
import { connectedClient } from '../support/mqtt-client.js';
import { freePort } from '../support/ports.js';

const QUEUE_BYTES = 3 * 1024 * 1024 + 7;

describe("broker: a socket's write mark is the client's queue bound", function () {
  for (const tls of [false, true]) {
    it(`${tls ? 'over TLS (set in a Node internal: this test fails if Node moves it)' : 'over plain TCP'}`, async () => {
      const ca = tls ? await makeTestCa() : undefined;
      const issued = await ca?.issue('broker', { cn: '127.0.0.1', ips: ['127.0.0.1'] });
      const broker = await startBroker({
        host: '127.0.0.1',
        port: await freePort(),
        log: pino({ level: 'silent' }),
        security: {
          users: new Map(),
          admins: new Set(),
          limits: { ...DEFAULT_BROKER_LIMITS, queueBytesPerClient: QUEUE_BYTES },
          ...(issued ? { tls: { cert: await readFile(issued.certFile), key: await readFile(issued.keyFile) } } : {}),
        },
        rateLimit: { perSecond: 100, burst: 100 },
      });
      try {
        const connected = new Promise<Client>((resolve) => broker.aedes.once('client', resolve));
        const client = await connectedClient(`${tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${broker.port}`, ca ? { ca: await readFile(ca.caFile) } : {});
        try {
          expect(((await connected).conn as Writable).writableHighWaterMark).to.equal(QUEUE_BYTES);
        } finally {
          await client.endAsync(true);
        }
      } finally {
        await broker.close();
        if (ca) await rm(ca.dir, { recursive: true, force: true });
      }
    });
  }
});
