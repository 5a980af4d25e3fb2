import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { appendFile, chmod, cp, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { MqttClient } from 'mqtt';
import { readBanListing } from '../../cli/ban-listing.js';
import { readJailBans } from '../../cli/full-sync.js';
import { Fail2banClient } from '../../src/fail2ban/client.js';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.js';
import { connectedClient } from '../support/mqtt-client.js';
import { ROOT } from '../support/paths.js';
import { freePort, freePortOn } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const runFile = promisify(execFile);

/** The i-th address of a test block of 65,536 (10.<block>.x.y). */
const address = (block: number, i: number) => `10.${block}.${Math.floor(i / 256)}.${i % 256}`;
const addresses = (block: number, count: number) => Array.from({ length: count }, (_, i) => address(block, i));

/** A real sshd log line, as sshd writes it through the journal, for fail2ban's own sshd filter. */
const sshdFailure = (ip: string) => `${new Date().toISOString()} web1 sshd[4242]: Failed password for invalid user admin from ${ip} port 50022 ssh2\n`;

/** A `get <jail> action syncfail2ban <property>` of the Python action, through fail2ban's socket. */
async function actionProperty(host: SimHost, property: string): Promise<string> {
  return host.fail2ban.cli('get', 'sshd', 'action', 'syncfail2ban', property);
}

async function fail2banLog(host: SimHost): Promise<string> {
  return readFile(host.fail2ban.logFile, 'utf8');
}

describe('the Python action in fail2ban-server: this host hands its bans to its agent, which publishes them', function () {
  this.timeout(180_000);

  it('the shipped jail.local gives the primary jail the Python action, with its defaults, and the sync jail none', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sf2b-jail-local-'));
    try {
      await cp('/etc/fail2ban', dir, { recursive: true });
      await cp(join(ROOT, 'etc/fail2ban'), dir, { recursive: true });
      const { stdout } = await runFile('fail2ban-client', ['-c', dir, '-d']);
      const actions = stdout.split('\n').filter((line) => line.includes("'addaction'"));
      expect(actions).to.include(`['set', 'sshd', 'addaction', 'syncfail2ban', '${join(dir, 'action.d/syncfail2ban.py')}', '{}']`);
      expect(actions.filter((line) => line.startsWith("['set', 'sshd-sync',") && /syncfail2ban|sync-action/.test(line))).to.deep.equal([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  describe('mesh', () => {
    const IPS = ['127.0.0.2', '127.0.0.3'];
    let a: SimHost;
    let b: SimHost;

    before(async () => {
      const port = await freePortOn(IPS);
      [a, b] = await Promise.all([
        SimHost.start({ name: 'py-a', ip: IPS[0]!, port, peers: [IPS[1]!], action: 'python', db: 'file', sshd: { systemFilter: 'sshd', settings: ['maxretry = 1'] } }),
        SimHost.start({ name: 'py-b', ip: IPS[1]!, port, peers: [IPS[0]!] }),
      ]);
      await Promise.all([a.startAgent(), b.startAgent()]);
      await Promise.all([a.waitSubscribed(2), b.waitSubscribed(2)]);
    });

    after(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
    });

    it("a ban fail2ban detects in a real sshd log line reaches the peer's sync jail", async () => {
      await appendFile(join(a.fail2ban.runDir, 'sshd.log'), sshdFailure('203.0.113.50'));
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.50'), "203.0.113.50 in py-b's sshd-sync", 30_000);
      expect(await a.banned('sshd')).to.include('203.0.113.50');
      expect(await a.banned('sshd-sync')).not.to.include('203.0.113.50');
    });

    it('1,000 bans in one banip call all reach the peer, and their unbans too', async () => {
      const ips = addresses(1, 1000);
      expect(await a.fail2ban.cli('set', 'sshd', 'banip', ...ips)).to.equal('1000');
      await waitFor(async () => {
        const banned = new Set(await b.banned('sshd-sync'));
        return ips.every((ip) => banned.has(ip));
      }, 'all 1,000 bans on py-b', 60_000);
      expect(await a.fail2ban.cli('set', 'sshd', 'unbanip', ...ips)).to.equal('1000');
      await waitFor(async () => !(await b.banned('sshd-sync')).some((ip) => ip.startsWith('10.1.')), 'all 1,000 unbans on py-b', 60_000);
      const publisher = part(await a.agentStatus(), 'publisher');
      expect(publisher.measures.backlog).to.deep.include({ value: 0 });
      expect(Number(await actionProperty(a, 'dropped'))).to.equal(0);
    });

    it("-f reads the jail through the action's listing: the bans and times of fail2ban's own listing, what is no address skipped", async () => {
      const ips = [...addresses(3, 200), '2001:db8::77', '10.4.0.0/24'];
      await a.fail2ban.cli('set', 'sshd', 'banip', ...ips);
      await a.fail2ban.cli('set', 'sshd', 'banip', 'not-an-ip');
      const listed = (await a.fail2ban.cli('set', 'sshd', 'action', 'syncfail2ban', 'listing')).split('\n');
      expect(listed).to.include('! not-an-ip');
      expect(listed.filter((line) => /^10\.3\.0\.7 \d+\.\d{3} \d+$/.test(line))).to.have.length(1);
      const client = new Fail2banClient(a.fail2ban.socket);
      try {
        const own = readBanListing((await client.command(['get', 'sshd', 'banip', '--with-time'])) as unknown[], Date.now(), () => undefined);
        const skipped: string[] = [];
        const write = process.stderr.write.bind(process.stderr);
        process.stderr.write = ((text: string) => skipped.push(text) > 0) as typeof process.stderr.write;
        const viaAction = await readJailBans(a.fail2ban.socket, 'sshd', 10_000).finally(() => (process.stderr.write = write));
        expect(viaAction.map((ban) => ban.address).sort()).to.deep.equal(own.map((ban) => ban.address).sort());
        expect(viaAction.map((ban) => ban.address)).to.include.members(['2001:db8::77', '10.4.0.0/24', '10.3.0.199']);
        const ownTimes = new Map(own.map((ban) => [ban.address, ban.bantime]));
        // fail2ban's own listing prints whole seconds, the action's milliseconds: they differ by a second at most.
        for (const ban of viaAction) expect(Math.abs(ban.bantime - ownTimes.get(ban.address)!), ban.address).to.be.at.most(1);
        // The reason as the action's listing gives it: read from fail2ban's own listing, it would be "not an IP address".
        expect(skipped).to.deep.equal(['syncfail2ban-client: skipping "not-an-ip" from jail sshd: not an IP address or network\n']);
      } finally {
        client.close();
        await a.fail2ban.cli('set', 'sshd', 'unbanip', ...ips, 'not-an-ip');
      }
    });

    it("bans fail2ban restores from its database at start are not published again, and its stop published no unban", async () => {
      await a.fail2ban.ban('sshd', '203.0.113.57');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.57'), '203.0.113.57 on py-b');
      await a.fail2ban.restart();
      await waitFor(async () => (await a.banned('sshd')).includes('203.0.113.57'), "203.0.113.57 restored in py-a's sshd");
      // In order behind anything the restored ban would have queued: a marker ban.
      await a.fail2ban.ban('sshd', '203.0.113.58');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.58'), 'the marker ban on py-b');
      expect(await actionProperty(a, 'sent')).to.equal('1');
      expect(await b.banned('sshd-sync')).to.include('203.0.113.57');
    });

    it('a "ban" that ends in a line break is not published (counted invalid), and the bans after it are, none refused', async () => {
      const [invalid, refused] = [Number(await actionProperty(a, 'invalid')), Number(await actionProperty(a, 'refused'))];
      const client = new Fail2banClient(a.fail2ban.socket);
      try {
        // fail2ban keeps it verbatim: not an address, but "$" in a pattern matches before a final line break.
        await client.command(['set', 'sshd', 'banip', '203.0.113.61\n']);
      } finally {
        client.close();
      }
      await a.fail2ban.ban('sshd', '203.0.113.62');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.62'), '203.0.113.62 on py-b');
      expect(Number(await actionProperty(a, 'invalid'))).to.equal(invalid + 1);
      expect(Number(await actionProperty(a, 'refused'))).to.equal(refused);
      expect(await b.banned('sshd-sync')).not.to.include('203.0.113.61');
    });

    it("fail2ban's reload keeps the action publishing", async () => {
      await a.fail2ban.cli('-c', a.fail2ban.confDir, 'reload');
      expect(await a.fail2ban.cli('get', 'sshd', 'actions')).to.include('syncfail2ban');
      await a.fail2ban.ban('sshd', '203.0.113.51');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.51'), 'the ban after the reload on py-b');
    });

    it("the agent's reload (SIGHUP) loses nothing the action hands over meanwhile", async () => {
      const agent = a.requireAgent();
      const ips = addresses(4, 50);
      agent.child.kill('SIGHUP');
      await a.fail2ban.cli('set', 'sshd', 'banip', ...ips);
      await agent.waitForOutput(/config reloaded/, "py-a's reload");
      await waitFor(async () => {
        const banned = new Set(await b.banned('sshd-sync'));
        return ips.every((ip) => banned.has(ip));
      }, 'the 50 bans on py-b');
      expect(Number(await actionProperty(a, 'dropped'))).to.equal(0);
    });

    it('a malformed line on the action socket is refused with its reason and counted; the agent goes on', async () => {
      const now = Date.now() / 1000;
      const replies = await talk(a.actionSocket, [
        'ban sshd 203.0.113.52 1733312000 600',
        'ban sshd not-an-ip 1733312000 600 1',
        `unban sshd 203.0.113.53 ${now} 600 1`,
        'x'.repeat(1000),
        `ban sshd 127.0.0.1 ${now} 600 1`,
      ]);
      expect(replies).to.have.length(5);
      expect(replies[0]).to.match(/^refused malformed: .* has 5 field\(s\), not 6/);
      expect(replies[1]).to.match(/^refused bad-address: "not-an-ip": not an IP address/);
      expect(replies[2]).to.equal('ok');
      expect(replies[3]).to.match(/^refused oversized/);
      expect(replies[4]).to.match(/^refused never-ban: ban of 127\.0\.0\.1 in sshd not published: .*loopback/);
      const socketPart = part(await a.agentStatus(), 'action_socket');
      expect(socketPart.measures.refused).to.deep.include({ values: { malformed: 1, 'bad-address': 1, oversized: 1, 'never-ban': 1 } });
      expect(a.requireAgent().alive).to.equal(true);
      await a.fail2ban.ban('sshd', '203.0.113.54');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.54'), 'a ban after the refused lines on py-b');
    });

    it('only root can hand the agent a ban: another user cannot connect to the action socket', async () => {
      const info = await stat(a.actionSocket);
      expect(info.mode & 0o777).to.equal(0o600);
      expect(info.uid).to.equal(0);
      // Let nobody reach the directory, so that only the socket's own mode stands in the way.
      await chmod(a.dir, 0o755);
      try {
        const attempt = await runFile('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, '-e', injector(a.actionSocket, '203.0.113.55')]).then(
          ({ stdout }) => stdout,
          (error: { stdout?: string; stderr?: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}`,
        );
        expect(attempt).to.match(/EACCES/);
      } finally {
        await chmod(a.dir, 0o700);
      }
      // The refused injection reached nothing: a ban by root after it arrives, the injected address does not.
      await a.fail2ban.ban('sshd', '203.0.113.56');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.56'), 'the marker ban on py-b');
      expect(await b.banned('sshd-sync')).not.to.include('203.0.113.55');
    });
  });

  describe('hub', () => {
    let hub: Mosquitto;
    /** The network path from host A to the hub: cut while `forward` is closed. */
    let path: TcpForwarder;
    let a: SimHost;
    let b: SimHost;
    let watcher: MqttClient;
    /** What A published, as the hub passed it on: [topic, payload]. */
    const seen: Array<[string, Record<string, unknown>]> = [];

    before(async () => {
      hub = await startMosquitto();
      path = await TcpForwarder.start(hub.port);
      watcher = await connectedClient(hub.url);
      await watcher.subscribeAsync('f2b/#', { qos: 1 });
      watcher.on('message', (topic, payload) => {
        const body = JSON.parse(payload.toString()) as Record<string, unknown>;
        if (body.origin === 'hub-a') seen.push([topic, body]);
      });
      [a, b] = await Promise.all([
        SimHost.start({
          name: 'hub-a', ip: '127.0.0.2', port: await freePort(), brokerUrl: `mqtt://127.0.0.1:${path.port}`, action: 'python', pythonActionOptions: ['queue_size=100'],
          sshd: { systemFilter: 'sshd', settings: ['maxretry = 1'] },
        }),
        SimHost.start({ name: 'hub-b', ip: '127.0.0.3', port: await freePort(), brokerUrl: hub.url }),
      ]);
      await Promise.all([a.startAgent(), b.startAgent()]);
    });

    // A test that cut A's path to the hub and failed leaves it restored for the next.
    afterEach(() => path.restore());

    after(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
      await watcher?.endAsync();
      await path?.close();
      await hub?.stop();
    });

    it('each event carries the seconds its ban has left and its bancount; an unban carries neither', async () => {
      await a.fail2ban.ban('sshd', '203.0.113.60');
      await a.fail2ban.unban('sshd', '203.0.113.60');
      await waitFor(() => seen.some(([topic]) => topic === 'f2b/sshd/unban'), 'the unban at the hub');
      const [ban, unban] = seen.filter(([, body]) => body.ip === '203.0.113.60');
      expect(ban![0]).to.equal('f2b/sshd/ban');
      expect(ban![1]).to.include({ ip: '203.0.113.60', origin: 'hub-a', bancount: 1 });
      expect(ban![1].bantime).to.be.within(3590, 3600);
      expect(unban).to.deep.equal(['f2b/sshd/unban', { ip: '203.0.113.60', origin: 'hub-a' }]);
      await waitFor(async () => !(await b.banned('sshd-sync')).includes('203.0.113.60') && seen.length === 2, 'the ban and unban applied on hub-b');
    });

    it('while the hub cannot be reached, events wait in state_dir across an agent restart and go out in order, with less time left', async () => {
      seen.length = 0;
      await path.cut();
      await waitFor(async () => part(await a.agentStatus(), 'link').details.state !== 'connected', "hub-a's link down");
      const bannedAt = Date.now();
      await a.fail2ban.ban('sshd', '203.0.113.61');
      await a.fail2ban.unban('sshd', '203.0.113.61');
      await a.fail2ban.ban('sshd', '203.0.113.62');
      await waitFor(async () => (part(await a.agentStatus(), 'publisher').measures.backlog as { value: number }).value === 3, 'three events in the outbox');
      expect(seen).to.deep.equal([]);
      await a.requireAgent().stop();
      await a.startAgent([], 'answering');
      const status = part(await a.agentStatus(), 'publisher');
      expect(status.measures.backlog).to.deep.include({ value: 3 });
      await waitFor(async () => part(await a.agentStatus(), 'publisher').problems.length > 0, 'the publisher reporting the outage');
      expect(part(await a.agentStatus(), 'publisher').problems[0]!.what).to.match(/^3 event\(s\) of this host's fail2ban wait to be published: cannot publish to mqtt:\/\/127\.0\.0\.1:\d+ since/);
      await path.restore();
      await waitFor(() => seen.length === 3, 'the three kept events at the hub', 30_000);
      expect(seen.map(([topic, body]) => `${topic} ${String(body.ip)}`)).to.deep.equal(['f2b/sshd/ban 203.0.113.61', 'f2b/sshd/unban 203.0.113.61', 'f2b/sshd/ban 203.0.113.62']);
      const waitedS = (Date.now() - bannedAt) / 1000;
      expect(seen[2]![1].bantime).to.be.within(3600 - waitedS - 1, 3600 - 1);
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.62'), '203.0.113.62 on hub-b');
      expect(await b.banned('sshd-sync')).not.to.include('203.0.113.61');
      await waitFor(async () => part(await a.agentStatus(), 'publisher').problems.length === 0, 'the publisher healthy again');
    });

    it('a ban bantime.increment lengthens is published again with its new length and bancount', async () => {
      const ip = '203.0.113.63';
      await a.fail2ban.cli('set', 'sshd', 'bantime', '2');
      await a.fail2ban.cli('set', 'sshd', 'bantime.increment', 'true');
      try {
        const log = join(a.fail2ban.runDir, 'sshd.log');
        await appendFile(log, sshdFailure(ip));
        await waitFor(() => seen.some(([topic, body]) => topic === 'f2b/sshd/unban' && body.ip === ip), 'the first ban, and its end after 2 s', 30_000);
        await appendFile(log, sshdFailure(ip));
        const prolonged = await waitFor(() => seen.find(([topic, body]) => topic === 'f2b/sshd/ban' && body.ip === ip && body.bancount === 2), 'the lengthened ban', 30_000);
        // bantime.increment doubles the second ban: 4 s, of which some passed before it was published.
        expect(prolonged[1].bantime).to.be.within(2, 4);
        // Its end, published too, before the next test counts events.
        await waitFor(() => seen.filter(([topic, body]) => topic === 'f2b/sshd/unban' && body.ip === ip).length === 2, 'the end of the lengthened ban', 30_000);
      } finally {
        await a.fail2ban.cli('set', 'sshd', 'bantime.increment', 'false');
        await a.fail2ban.cli('set', 'sshd', 'bantime', '3600');
      }
    });

    it('with the agent stopped, fail2ban takes a burst as fast as with no sync action; what does not fit is dropped, counted and logged once', async () => {
      const client = new Fail2banClient(a.fail2ban.socket, { timeoutMs: 60_000 });
      try {
        await a.requireAgent().stop();
        const logBefore = await fail2banLog(a);
        // Baseline: the same server, a jail with no action.
        const baselineStart = Date.now();
        await client.command(['set', 'web', 'banip', ...addresses(2, 1000)]);
        const baselineMs = Date.now() - baselineStart;
        const start = Date.now();
        await client.command(['set', 'sshd', 'banip', ...addresses(3, 1000)]);
        const pythonMs = Date.now() - start;
        // Generous: a loaded machine's noise, not the Python action's cost, decides this bound.
        expect(pythonMs, `${pythonMs} ms with the Python action, ${baselineMs} ms without`).to.be.below(3 * baselineMs + 1_000);
        expect(await actionProperty(a, 'dropped')).to.equal('900');
        expect(await actionProperty(a, 'queued')).to.equal('100');
        const logged = (await fail2banLog(a)).slice(logBefore.length);
        expect(logged.match(/dropping what does not fit/g)).to.have.length(1);
        seen.length = 0;
        await a.startAgent([], 'answering');
        await waitFor(async () => (await actionProperty(a, 'queued')) === '0', 'the queue drained into the agent');
        await waitFor(() => seen.length === 100, 'the 100 kept bans at the hub');
        expect(seen.map(([, body]) => body.ip)).to.deep.equal(addresses(3, 100));
      await waitFor(async () => /takes events again; jail sshd sent what it kept and dropped 900 event\(s\): run "syncfail2ban-client -f sshd"/.test(await fail2banLog(a)), 'the end of the outage in fail2ban\'s log');
      } finally {
        await client.close();
      }
    });
  });
});

/** Sends lines on a unix socket and collects one reply line per line sent. */
function talk(socketPath: string, lines: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path: socketPath });
    let received = '';
    socket.on('connect', () => socket.write(`${lines.join('\n')}\n`));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      const replies = received.split('\n').slice(0, -1);
      if (replies.length >= lines.length) {
        socket.end();
        resolve(replies);
      }
    });
    socket.on('error', reject);
  });
}

/** A node -e script that tries to hand the agent a ban on `socketPath` and prints what happened. */
function injector(socketPath: string, ip: string): string {
  return `const s = require('node:net').connect(${JSON.stringify(socketPath)});
s.on('connect', () => { s.write('ban sshd ${ip} ' + Date.now() / 1000 + ' 600 1\\n'); s.on('data', (d) => { console.log('answered ' + d); process.exit(0); }); });
s.on('error', (e) => { console.log(e.code); process.exit(0); });`;
}

/** A TCP path from a local port to a broker that a test can cut and restore: a network outage for one host only. */
class TcpForwarder {
  private readonly connections = new Set<Socket>();
  private server: Server | undefined;

  private constructor(
    readonly port: number,
    private readonly target: number,
  ) {}

  static async start(target: number): Promise<TcpForwarder> {
    const forwarder = new TcpForwarder(await freePort(), target);
    await forwarder.listen();
    return forwarder;
  }

  /** Closes the listener and every connection through it. */
  async cut(): Promise<void> {
    const { server } = this;
    this.server = undefined;
    for (const socket of this.connections) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Listens again (if cut). */
  async restore(): Promise<void> {
    if (!this.server) await this.listen();
  }

  close(): Promise<void> {
    return this.cut();
  }

  private listen(): Promise<void> {
    const server = createServer((inbound) => {
      const outbound = connect({ host: '127.0.0.1', port: this.target });
      for (const socket of [inbound, outbound]) {
        this.connections.add(socket);
        socket.on('close', () => this.connections.delete(socket));
        socket.on('error', () => undefined);
      }
      inbound.pipe(outbound).pipe(inbound);
      inbound.on('close', () => outbound.destroy());
      outbound.on('close', () => inbound.destroy());
    });
    this.server = server;
    return new Promise((resolve) => server.listen({ host: '127.0.0.1', port: this.port }, () => resolve()));
  }
}
