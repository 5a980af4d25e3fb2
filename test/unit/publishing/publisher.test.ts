import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes, type PublishPacket } from 'aedes';
import { pino } from 'pino';
import { BrokerLink } from '../../../agent/links/broker-link.js';
import type { ActionEvent } from '../../../agent/publishing/action-line.js';
import { Outbox } from '../../../agent/publishing/outbox.js';
import { Publisher } from '../../../agent/publishing/publisher.js';
import { mustParseAddress } from '../../../src/ip.js';
import { freePort } from '../../support/ports.js';
import { measured } from '../../support/status.js';
import { waitFor } from '../../support/wait.js';

const log = pino({ level: 'silent' });

/** A plain Aedes broker on a fixed port that records what is published to it, and can be stopped and started again. */
class Broker {
  readonly published: Array<{ topic: string; body: Record<string, unknown> }> = [];
  private server: Server | undefined;
  private aedes: Aedes | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(readonly port: number) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const aedes = await Aedes.createBroker();
    aedes.on('publish', (packet: PublishPacket, client) => {
      if (client && packet.topic.startsWith('f2b/')) this.published.push({ topic: packet.topic, body: JSON.parse(packet.payload.toString()) as Record<string, unknown> });
    });
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      aedes.handle(socket);
    });
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: this.port }, () => resolve()));
    [this.aedes, this.server] = [aedes, server];
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (this.aedes ? this.aedes.close(() => resolve()) : resolve()));
  }
}

const now = () => Date.now() / 1000;
const event = (action: 'ban' | 'unban', ip: string, start = now(), bantime = 600, bancount = 1): ActionEvent => ({ action, jail: 'sshd', address: mustParseAddress(ip), start, bantime, bancount });

describe("the publisher: this host's events, in order, from the outbox to the broker", function () {
  this.timeout(20_000);
  let broker: Broker;
  let link: BrokerLink;
  let outbox: Outbox;
  let publisher: Publisher;
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-outbox-'));
    broker = new Broker(await freePort());
    await broker.start();
    link = new BrokerLink(broker.url, { nodeId: 'web1', connectTimeoutS: 2, log, onMessage: () => undefined });
    await link.start();
    await waitFor(() => link.connected, 'the link subscribed');
    outbox = new Outbox(dir, log, { limit: 5 });
    publisher = new Publisher(outbox, () => link, { nodeId: 'web1', log, rateLimit: { perSecond: 1_000, burst: 1_000 }, timeoutMs: 2_000 });
    await publisher.start();
  });

  afterEach(async () => {
    await publisher.stop(1_000);
    await link.stop();
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('publishes with this host as origin, the seconds a ban has left and its bancount; an unban without them; a ban already over is not sent', async () => {
    outbox.add([event('ban', '203.0.113.1', now() - 100, 600, 2), event('ban', '203.0.113.2', now(), -1), event('unban', '203.0.113.1'), event('ban', '203.0.113.3', now() - 700, 600)]);
    publisher.kick();
    await waitFor(() => outbox.size === 0, 'the outbox emptied');
    // Aedes acknowledges a QoS 1 publish before it emits 'publish', where the broker records it.
    await waitFor(() => broker.published.length >= 3, 'three events at the broker');
    expect(broker.published).to.have.length(3);
    const [first, second, third] = broker.published;
    expect(first!.topic).to.equal('f2b/sshd/ban');
    expect(first!.body).to.include({ ip: '203.0.113.1', origin: 'web1', bancount: 2 });
    expect(first!.body.bantime).to.be.within(499, 501);
    expect(second).to.deep.equal({ topic: 'f2b/sshd/ban', body: { ip: '203.0.113.2', origin: 'web1', bancount: 1 } });
    expect(third).to.deep.equal({ topic: 'f2b/sshd/unban', body: { ip: '203.0.113.1', origin: 'web1' } });
    const status = publisher.status();
    expect(measured(status, 'published')).to.equal(3);
    expect(measured(status, 'expired')).to.equal(1);
    expect(status.problems).to.deep.equal([]);
  });

  it('while the broker is down, events wait in the outbox and the status says so; once it is back they go out in order', async () => {
    await broker.stop();
    await waitFor(() => !link.connected, 'the link down');
    outbox.add([event('ban', '203.0.113.4'), event('unban', '203.0.113.4'), event('ban', '203.0.113.5')]);
    publisher.kick();
    await waitFor(() => publisher.status().problems.length > 0, 'the problem in the status', 10_000);
    const status = publisher.status();
    expect(status.problems[0]!.what).to.match(new RegExp(`^3 event\\(s\\) of this host's fail2ban wait to be published: cannot publish to ${broker.url} since `));
    expect(measured(status, 'backlog')).to.equal(3);
    expect(measured(status, 'failures')).to.equal(1);

    const back = new Broker(broker.port);
    broker = back;
    await back.start();
    await waitFor(() => outbox.size === 0, 'the kept events published', 10_000);
    await waitFor(() => back.published.length >= 3, 'three events at the broker');
    expect(back.published.map(({ topic, body }) => `${topic} ${String(body.ip)}`)).to.deep.equal(['f2b/sshd/ban 203.0.113.4', 'f2b/sshd/unban 203.0.113.4', 'f2b/sshd/ban 203.0.113.5']);
    expect(publisher.status().problems).to.deep.equal([]);
  });

  it('a full outbox drops what does not fit, counted, and the status says how to heal it', async () => {
    await broker.stop();
    await waitFor(() => !link.connected, 'the link down');
    const taken = outbox.add(Array.from({ length: 8 }, (_, i) => event('ban', `203.0.113.${10 + i}`)));
    expect(taken).to.equal(5);
    const status = publisher.status();
    expect(measured(status, 'dropped')).to.equal(3);
    expect(status.problems.map((problem) => problem.what)).to.include("3 event(s) of this host's fail2ban were dropped: the outbox was full (5) while the broker did not answer");
    expect(status.problems.map((problem) => problem.fix)).to.include('once the broker answers, run "syncfail2ban-client -f <jail>" for each primary jail so that the other hosts get every ban again');
  });

  it('what waits in the outbox survives a restart and a kill -9 of the agent; what was published does not come back', async () => {
    await broker.stop();
    await waitFor(() => !link.connected, 'the link down');
    outbox.add([event('ban', '203.0.113.20'), event('unban', '203.0.113.20')]);
    await publisher.stop(100);
    // A kill -9: a new outbox on the same state_dir, the old one never closed.
    const crashed = new Outbox(dir, log, { limit: 5 });
    crashed.load();
    crashed.add([event('ban', '203.0.113.21')]);
    const restarted = new Outbox(dir, log, { limit: 5 });
    restarted.load();
    expect([0, 1, 2].map((i) => `${restarted.at(i)!.action} ${restarted.at(i)!.address}`)).to.deep.equal(['ban 203.0.113.20', 'unban 203.0.113.20', 'ban 203.0.113.21']);
    expect(restarted.size).to.equal(3);
    restarted.remove(2);
    await restarted.close();
    const again = new Outbox(dir, log, { limit: 5 });
    again.load();
    expect(again.size).to.equal(1);
    expect(again.at(0)).to.deep.include({ action: 'ban', address: '203.0.113.21', jail: 'sshd', bantime: 600, bancount: 1 });
    again.add([event('ban', '203.0.113.22')]);
    expect(again.at(1)!.seq).to.be.above(again.at(0)!.seq);
    await again.close();
    await crashed.close();
  });
});
