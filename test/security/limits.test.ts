import { expect } from 'chai';
import { connectedFrom } from '../support/mqtt-client.js';
import { freePort } from '../support/ports.js';
import { snapshotsOf } from '../support/fleet-helpers.js';
import { SimHost } from '../support/sim-host.js';
import { startStandaloneBroker, type StandaloneBroker } from '../support/standalone-broker.js';
import { waitFor } from '../support/wait.js';

const LIMITS = ['rate_limit = 5', 'rate_burst = 20'];

describe('abuse limits: per-client rate at the broker, per-origin rate at the agent', function () {
  this.timeout(120_000);
  let broker: StandaloneBroker;
  let a: SimHost;
  let b: SimHost;

  before(async () => {
    broker = await startStandaloneBroker(LIMITS);
    const hostPort = await freePort('127.0.0.2');
    [a, b] = await Promise.all(
      ['lim-a', 'lim-b'].map((name, index) => SimHost.start({ name, ip: `127.0.0.${index + 2}`, port: hostPort, brokerUrl: broker.url, extra: LIMITS })),
    );
    await Promise.all([a.startAgent(), b.startAgent()]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await broker?.stop();
  });

  const floodAddresses = async (host: SimHost, prefix: string) => (await host.banned('sshd-sync')).filter((ip) => ip.startsWith(prefix));

  it('the broker cuts off a client that floods, and other hosts keep syncing', async () => {
    // Its own source address: lim-a's client publishes from 127.0.0.1, and the broker and the
    // agents limit each sender address on its own.
    const flooder = await connectedFrom(broker.url, '127.0.0.19');
    const closed = new Promise<void>((resolve) => flooder.once('close', () => resolve()));
    for (let i = 0; i < 300; i++) flooder.publish('f2b/sshd/ban', `10.99.${Math.floor(i / 250)}.${(i % 250) + 1}`, { qos: 0 });
    await closed;
    flooder.end(true);
    await waitFor(() => broker.process.logLines().some((line) => line.reason === 'rate-limited'), 'the broker to log the rate limit');

    await a.fail2ban.ban('sshd', '203.0.113.70');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.70'), "host lim-a's ban on lim-b after the flood");
    expect((await floodAddresses(b, '10.99.')).length).to.be.at.most(25);
  });

  it("a flood claiming another host's origin from many connections does not drain that host's rate at the agents", async () => {
    const logged = b.requireAgent().logLines().length;
    // Ten source addresses: the broker limits each sender address (or account) on its own.
    const clients = await Promise.all(Array.from({ length: 10 }, (_, c) => connectedFrom(broker.url, `127.0.0.${20 + c}`)));
    // 10 senders x 10 events claiming lim-a: each stays under the broker's burst of 20, together
    // five times lim-b's burst for one origin.
    await Promise.all(
      clients.map((client, c) =>
        Promise.all(Array.from({ length: 10 }, (_, i) => client.publishAsync('f2b/sshd/ban', JSON.stringify({ ip: `10.98.${c}.${i + 1}`, origin: 'lim-a' }), { qos: 1 }))),
      ),
    );
    await Promise.all(clients.map((client) => client.endAsync()));

    await a.fail2ban.ban('sshd', '203.0.113.71');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.71'), "lim-a's own ban on lim-b right after the flood");
    expect(b.requireAgent().logLines().slice(logged).filter((line) => line.reason === 'rate-limited')).to.deep.equal([]);
  });

  it("forged snapshot parts claiming another host's origin from many connections do not drain that host's snapshot rate at the agents", async () => {
    await a.fail2ban.ban('sshd', '203.0.113.72');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.72'), "lim-a's ban on lim-b");
    const logged = b.requireAgent().logLines().length;
    const clients = await Promise.all(Array.from({ length: 10 }, (_, c) => connectedFrom(broker.url, `127.0.0.${40 + c}`)));
    // 10 senders x 10 parts of one snapshot forged for lim-a (empty, and never complete): each
    // sender under the broker's burst of 20, together five times lim-b's burst for one sender.
    // Each also claims lim-a's connection (its client publishes from 127.0.0.1), which the broker overwrites.
    const forged = (part: number) => JSON.stringify({ origin: 'lim-a', id: 'f0f0f0f0f0f0f0f0', part, parts: 1_000, ips: [], via: '127.0.0.1' });
    await Promise.all(clients.map((client, c) => Promise.all(Array.from({ length: 10 }, (_, i) => client.publishAsync('f2b/sshd/snapshot', forged(c * 10 + i), { qos: 1 })))));
    await Promise.all(clients.map((client) => client.endAsync()));

    const result = await a.client(['-f', 'sshd']);
    expect(result.code, result.stderr).to.equal(0);
    await waitFor(async () => (await snapshotsOf(b)).some((s) => s.origin === 'lim-a' && s.jail === 'sshd' && s.complete), "lim-a's own snapshot complete on lim-b right after the flood");
    const [own] = (await snapshotsOf(b)).filter((s) => s.origin === 'lim-a' && s.jail === 'sshd');
    expect(own!.addresses, 'every address lim-a bans in sshd').to.be.at.least(1);
    expect(b.requireAgent().logLines().slice(logged).filter((line) => line.reason === 'rate-limited')).to.deep.equal([]);
  });

  it('the broker refuses a snapshot part that outgrows the size limit once it is stamped with via', async () => {
    // Numbers are not addresses, so the part is valid (its entries counted invalid); JSON turns
    // 1e300 into 1e+300, a byte more for each, so the stamped part is far over the limit.
    const part = `{"origin":"lim-x","id":"0123456789abcdef","part":0,"parts":1,"ips":[${Array(10_800).fill('1e300').join(',')}]}`;
    expect(part.length).to.be.below(64 * 1024);
    const sender = await connectedFrom(broker.url, '127.0.0.60');
    let closed = false;
    sender.once('close', () => (closed = true));
    sender.publish('f2b/sshd/snapshot', part, { qos: 0 });
    await waitFor(() => closed, 'the broker to close the connection that sent it');
    sender.end(true);
    await waitFor(
      () => broker.process.logLines().some((line) => line.reason === 'oversized' && /once stamped exceeds/.test(String(line.msg))),
      'the broker to refuse the stamped part as oversized',
    );
  });
});
