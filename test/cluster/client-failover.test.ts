import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hubOrder } from '../../src/config-hub.js';
import { BIN } from '../support/paths.js';
import { connectedClient } from '../support/mqtt-client.js';
import { freePort } from '../support/ports.js';
import { run } from '../support/run.js';
import { startStandaloneBroker, type StandaloneBroker } from '../support/standalone-broker.js';
import { waitFor } from '../support/wait.js';

const TIMEOUT_S = 4;

/** A hub instance that hangs: it accepts TCP connections and never says a word. */
async function silentInstance(): Promise<{ url: string; server: Server; sockets: Socket[] }> {
  const port = await freePort();
  const sockets: Socket[] = [];
  const server = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `mqtt://127.0.0.1:${port}`, server, sockets };
}

/** A node id for which this host tries `urls` in exactly this order. */
function nodeIdTrying(urls: string[]): string {
  for (let i = 0; ; i++) {
    const order = hubOrder(urls, `host-${i}`);
    if (order.every((url, index) => url === urls[index])) return `host-${i}`;
  }
}

describe('syncfail2ban-client with several hub instances in broker_url', function () {
  this.timeout(60_000);
  let dir: string;
  let live: StandaloneBroker;
  let silent: Awaited<ReturnType<typeof silentInstance>>;
  let closedPort: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-failover-'));
    [live, silent] = await Promise.all([startStandaloneBroker(), silentInstance()]);
    closedPort = `mqtt://127.0.0.1:${await freePort()}`; // nothing listens there
  });

  after(async () => {
    for (const socket of silent?.sockets ?? []) socket.destroy();
    silent?.server.close();
    await live?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const client = async (urls: string[], ...args: string[]) => {
    const config = join(dir, 'client.cfg');
    await writeFile(config, `node_id = ${nodeIdTrying(urls)}\nbroker_url = ${urls.join(' ')}\nconnection_timeout = ${TIMEOUT_S}\n`);
    const started = Date.now();
    const result = await run(process.execPath, [BIN.client, '--config', config, ...args]);
    return { ...result, ms: Date.now() - started };
  };

  it('publishes through the next instance when the first refuses connections or hangs, within connection_timeout', async () => {
    const received: string[] = [];
    const listener = await connectedClient(live.url);
    await listener.subscribeAsync('f2b/#', { qos: 1 });
    listener.on('message', (_topic, payload) => received.push(JSON.parse(payload.toString()).ip));
    try {
      // What the client takes with nothing in its way, on this machine now: its start-up under load is not the broker's time.
      const direct = await client([live.url], '-a', 'sshd', 'ban', '203.0.113.80');
      expect(direct.code, direct.stderr).to.equal(0);
      const refused = await client([closedPort, live.url], '-a', 'sshd', 'ban', '203.0.113.81');
      expect(refused.code, refused.stderr).to.equal(0);
      const hung = await client([silent.url, live.url], '-a', 'sshd', 'ban', '203.0.113.82');
      expect(hung.code, hung.stderr).to.equal(0);
      expect(hung.ms - direct.ms, 'the hung instance cost at most connection_timeout').to.be.below(TIMEOUT_S * 1000);
      await waitFor(() => received.includes('203.0.113.81') && received.includes('203.0.113.82'), 'both bans through the live instance');
    } finally {
      await listener.endAsync();
    }
  });

  it('fails only when no instance takes the event, within connection_timeout, saying what each one did', async () => {
    const direct = await client([live.url], '-a', 'sshd', 'ban', '203.0.113.84');
    expect(direct.code, direct.stderr).to.equal(0);
    const result = await client([silent.url, closedPort], '-a', 'sshd', 'ban', '203.0.113.83');
    expect(result.code).to.equal(1);
    expect(result.ms - direct.ms, 'no instance kept it past connection_timeout').to.be.below(TIMEOUT_S * 1000 + 1_000);
    expect(result.stderr).to.include('no hub instance took the message(s)');
    expect(result.stderr).to.include(`the broker at ${silent.url} did not accept the connection within`);
    expect(result.stderr).to.include(`cannot publish to the broker at ${closedPort}: connection refused`);
  });
});
