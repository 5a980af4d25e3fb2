import { expect } from 'chai';
import type { Writable } from 'node:stream';
import type { Client } from 'aedes';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { turnAfterSnapshotParts } from '../../../agent/links/broker-link.js';
import { startBroker } from '../../../broker/broker.js';
import { publishAll } from '../../../cli/mqtt-publish.js';
import { DEFAULT_BROKER_LIMITS } from '../../../src/config-security.js';
import { encodeSnapshot, snapshotTopic } from '../../../src/snapshot.js';
import { connectedClient } from '../../support/mqtt-client.js';
import { freePort } from '../../support/ports.js';
import { waitFor } from '../../support/wait.js';

describe("a link takes a burst of snapshot parts one event-loop turn apart (real broker)", () => {
  for (const turns of [true, false]) {
    it(turns ? 'with the link\'s hook: the loop turns after every part, before the next one is taken' : 'without it (the baseline): parts read at once are taken in one go', async function () {
      this.timeout(30_000);
      const broker = await startBroker({
        host: '127.0.0.1',
        port: await freePort(),
        log: pino({ level: 'silent' }),
        security: { users: new Map(), admins: new Set(), limits: DEFAULT_BROKER_LIMITS },
        rateLimit: { perSecond: 200, burst: 20_000 },
      });
      const url = `mqtt://127.0.0.1:${broker.port}`;
      let subscriber: MqttClient | undefined;
      try {
        const connected = new Promise<Client>((resolve) => broker.aedes.once('client', resolve));
        subscriber = await connectedClient(url);
        const conn = (await connected).conn as Writable;
        if (turns) turnAfterSnapshotParts(subscriber);
        const seen: string[] = [];
        subscriber.on('message', () => {
          seen.push('part');
          // What else waits on the loop: a sink's batch timer, a status request.
          setImmediate(() => seen.push('turn'));
        });
        await subscriber.subscribeAsync('f2b/+/+', { qos: 1 });
        const parts = encodeSnapshot('host-a', Array.from({ length: 40_000 }, (_, i) => `10.9.${i >> 8}.${i & 255}`));
        // The parts wait in the socket until every one was sent: they are read at once, as after a moment the agent was busy.
        subscriber.stream.pause();
        await publishAll(url, parts.map((payload) => ({ topic: snapshotTopic('web'), payload })), { timeoutMs: 10_000 });
        await waitFor(() => conn.writableLength === 0, "the broker's writes to the subscriber handed to the kernel");
        subscriber.stream.resume();
        await waitFor(() => seen.filter((what) => what === 'turn').length === parts.length, 'every part taken and its turn run');
        const alternating = parts.flatMap(() => ['part', 'turn']);
        if (turns) expect(seen).to.deep.equal(alternating);
        else expect(seen).not.to.deep.equal(alternating);
      } finally {
        await subscriber?.endAsync(true);
        await broker.close();
      }
    });
  }
});
