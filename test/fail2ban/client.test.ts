import { execFileSync } from 'node:child_process';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Fail2banClient, Fail2banError, MAX_ADDRESSES_PER_COMMAND } from '../../src/fail2ban/client.js';
import { decodeReply, END_MARKER, PickleError } from '../../src/fail2ban/pickle.js';
import { startFail2ban, stopAllFail2ban, type Fail2banServer } from '../support/fail2ban-server.js';
import { waitFor } from '../support/wait.js';

/** Distinct IPv4 addresses 10.<prefix>.x.y. */
function addresses(prefix: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `10.${prefix}.${Math.floor(i / 250)}.${(i % 250) + 1}`);
}

async function rejectionOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the promise to reject, but it resolved');
}

async function fail2banError(promise: Promise<unknown>): Promise<Fail2banError> {
  const error = await rejectionOf(promise);
  expect(error).to.be.instanceOf(Fail2banError);
  return error as Fail2banError;
}

describe('Fail2banClient against a real fail2ban server', function () {
  let server: Fail2banServer;
  let client: Fail2banClient;

  before(async () => {
    server = await startFail2ban({
      name: 'client',
      jails: [
        { name: 'sync', kind: 'sync' },
        { name: 'primary', kind: 'primary' },
      ],
    });
    client = new Fail2banClient(server.socket);
  });

  after(async () => {
    await client?.close();
    await stopAllFail2ban();
  });

  it('pings, lists the jails and tells which exist', async () => {
    await client.ping();
    expect((await client.jails()).sort()).to.deep.equal(['primary', 'sync']);
    expect(await client.jailExists('sync')).to.equal(true);
    expect(await client.jailExists('nope')).to.equal(false);
  });

  it('bans a batch and returns how many were newly banned', async () => {
    expect(await client.banIps('sync', ['192.0.2.1', '192.0.2.2', '192.0.2.3'])).to.equal(3);
    expect(await client.banIps('sync', ['192.0.2.3', '192.0.2.4', '192.0.2.1'])).to.equal(1);
    expect(await client.banIps('sync', [])).to.equal(0);
    const viaCli = await server.banned('sync');
    expect(viaCli).to.include.members(['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']);
    expect((await client.banned('sync')).sort()).to.deep.equal([...viaCli].sort());
    expect(await client.banned('sync')).to.include('192.0.2.2').and.not.include('198.51.100.9');
  });

  it('unbans a batch in which some addresses are not banned, counting only those that were', async () => {
    await client.banIps('sync', ['192.0.2.10', '192.0.2.11', '192.0.2.12']);
    expect(await client.unbanIps('sync', ['192.0.2.10', '203.0.113.99', '192.0.2.12', '203.0.113.98'])).to.equal(2);
    const banned = await server.banned('sync');
    expect(banned).to.include('192.0.2.11');
    expect(banned).not.to.include.members(['192.0.2.10']);
    expect(banned).not.to.include.members(['192.0.2.12']);
    expect(await client.unbanIps('sync', ['203.0.113.97'])).to.equal(0);
    expect(await client.unbanIps('sync', [])).to.equal(0);
  });

  it('runs the ban and unban actions of a primary jail', async () => {
    expect(await client.banIps('primary', ['198.51.100.1', '198.51.100.2'])).to.equal(2);
    expect(await server.actions()).to.include.members(['ban primary 198.51.100.1', 'ban primary 198.51.100.2']);
    expect(await client.unbanIps('primary', ['198.51.100.1'])).to.equal(1);
    expect(await server.actions()).to.include('unban primary 198.51.100.1');
    expect(await server.banned('primary')).to.deep.equal(['198.51.100.2']);
  });

  it('sees bans made by fail2ban itself (fail2ban-client) and reports them as fail2ban stores them', async () => {
    expect(await server.ban('primary', '198.51.100.50')).to.equal(1);
    expect(await client.banned('primary')).to.include('198.51.100.50');
    await client.banIps('sync', ['2001:DB8:0:0::1']);
    expect(await client.banned('sync')).to.include('2001:db8::1');
  });

  it("rejects an unknown jail with kind 'rejected' and a message naming the jail", async () => {
    const error = await fail2banError(client.banIps('nope', ['192.0.2.1']));
    expect(error.kind).to.equal('rejected');
    expect(error.message).to.include("fail2ban: jail 'nope' does not exist");
    expect(error.message).to.include(server.socket);
    expect(error.exception?.pyException).to.equal('fail2ban.exceptions.UnknownJailException');
    expect((await fail2banError(client.banned('nope'))).kind).to.equal('rejected');
    // the connection is still usable afterwards
    await client.ping();
  });

  it("rejects a command fail2ban does not know with kind 'rejected' and its exception text", async () => {
    const error = await fail2banError(client.command(['get', 'sync', 'no-such-setting']));
    expect(error.kind).to.equal('rejected');
    expect(error.message).to.include('Invalid command');
  });

  it('refuses arguments containing the marker and option-like addresses, sending nothing', async () => {
    const error = await rejectionOf(client.command(['set', 'sync', 'banip', '<F2B_END_COMMAND>']));
    expect(error).to.be.instanceOf(PickleError);
    expect(await rejectionOf(client.banIps('sync', ['192.0.2.77', '<F2B_x']))).to.be.instanceOf(PickleError);
    const optionLike = await rejectionOf(client.unbanIps('sync', ['--report-absent', '192.0.2.1']));
    expect(optionLike).to.be.instanceOf(RangeError);
    expect(optionLike.message).to.match(/would be read as an option/);
    expect(await client.banned('sync')).not.to.include('192.0.2.77');
    await client.ping();
  });

  it('bans 5,000 addresses in one call (split into commands of at most 1,000) and all end up banned', async () => {
    const ips = addresses(50, 5000);
    expect(await client.banIps('sync', ips)).to.equal(5000);
    const banned = new Set(await server.banned('sync'));
    expect(ips.filter((ip) => !banned.has(ip))).to.deep.equal([]);
    expect(await client.unbanIps('sync', ips)).to.equal(5000);
    const unbanned = new Set(ips);
    expect((await client.banned('sync')).filter((ip) => unbanned.has(ip))).to.deep.equal([]);
  });

  it('answers pipelined concurrent commands each with its own reply', async () => {
    const echoes = Array.from({ length: 500 }, (_, i) => client.command(['echo', `n${i}`, 'x']));
    const batches = Array.from({ length: 20 }, (_, i) => client.banIps('sync', addresses(100 + i, 50)));
    const checks = Array.from({ length: 20 }, (_, i) => client.command(['get', 'sync', 'banned', `203.0.113.${i}`]));
    const [echoed, counts, flags] = await Promise.all([Promise.all(echoes), Promise.all(batches), Promise.all(checks)]);
    echoed.forEach((reply, i) => expect(reply).to.deep.equal([`n${i}`, 'x']));
    expect(counts).to.deep.equal(Array.from({ length: 20 }, () => 50));
    expect(flags).to.deep.equal(Array.from({ length: 20 }, () => 0));
    const banned = new Set(await server.banned('sync'));
    for (let i = 0; i < 20; i++) expect(addresses(100 + i, 50).every((ip) => banned.has(ip))).to.equal(true);
  });

  it('refuses commands after close()', async () => {
    const closing = new Fail2banClient(server.socket);
    await closing.ping();
    await closing.close();
    const error = await fail2banError(closing.ping());
    expect(error.kind).to.equal('unavailable');
    expect(error.message).to.match(/closed/);
  });
});

describe('Fail2banClient when fail2ban is unreachable or restarts', function () {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'f2b-unreach-'));
  });

  after(async () => {
    await stopAllFail2ban();
    await rm(dir, { recursive: true, force: true });
  });

  it("reports a socket path that does not exist as 'unavailable', saying what to check", async () => {
    const socket = path.join(dir, 'missing.sock');
    const client = new Fail2banClient(socket);
    const error = await fail2banError(client.ping());
    expect(error.kind).to.equal('unavailable');
    expect(error.code).to.equal('ENOENT');
    expect(error.message).to.include(socket);
    expect(error.message).to.include('Is fail2ban running? Is the socket path right (fail2ban_socket)?');
    await client.close();
  });

  it("reports a stale socket file nobody listens on as 'unavailable' (ECONNREFUSED)", async () => {
    const socket = path.join(dir, 'stale.sock');
    // A process that binds and exits leaves the file behind, as a killed fail2ban does.
    execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', socket]);
    const client = new Fail2banClient(socket);
    const error = await fail2banError(client.banIps('sync', ['192.0.2.1']));
    expect(error.kind).to.equal('unavailable');
    expect(error.code).to.equal('ECONNREFUSED');
    expect(error.message).to.include(socket);
    await client.close();
  });

  it('recovers on the next command after the server stopped mid-way and came back', async () => {
    const server = await startFail2ban({ name: 'restart', jails: [{ name: 'sync', kind: 'sync' }], db: 'file' });
    const client = new Fail2banClient(server.socket);
    try {
      expect(await client.banIps('sync', ['192.0.2.200'])).to.equal(1);

      // Commands racing the shutdown either complete or fail as 'unavailable'; none hangs.
      const racing = Array.from({ length: 200 }, (_, i) => client.command(['echo', String(i)]));
      const stopping = server.stopProcess();
      const outcomes = await Promise.allSettled(racing);
      await stopping;
      for (const [i, outcome] of outcomes.entries()) {
        if (outcome.status === 'fulfilled') expect(outcome.value).to.deep.equal([String(i)]);
        else expect((outcome.reason as Fail2banError).kind, String(outcome.reason)).to.equal('unavailable');
      }
      const down = await fail2banError(client.ping());
      expect(down.kind).to.equal('unavailable');

      await server.startProcess();
      // Same client object: reconnects lazily. The file database kept the ban, but fail2ban
      // restores it a few hundred ms after the jail already answers `status`.
      await client.ping();
      await waitFor(async () => (await client.banned('sync')).includes('192.0.2.200'), 'the ban to be restored from the database');
      expect(await client.banned('sync')).to.deep.equal(['192.0.2.200']);
      expect(await client.banIps('sync', ['192.0.2.201'])).to.equal(1);
    } finally {
      await client.close();
      await server.stop();
    }
  });
});

/** A scripted stand-in for fail2ban, for what a real server will not do on demand. */
class FakeFail2ban {
  readonly commands: string[][] = [];
  connections = 0;
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();

  constructor(
    readonly socket: string,
    private readonly answer: (args: string[], connection: net.Socket) => void,
  ) {
    this.server = net.createServer((connection) => {
      this.connections++;
      this.open.add(connection);
      connection.on('close', () => this.open.delete(connection));
      let buffer = Buffer.alloc(0);
      connection.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        for (let end = buffer.indexOf(END_MARKER); end >= 0; end = buffer.indexOf(END_MARKER)) {
          const args = decodeReply(buffer.subarray(0, end)) as string[];
          buffer = buffer.subarray(end + END_MARKER.length);
          this.commands.push(args);
          this.answer(args, connection);
        }
      });
      connection.on('error', () => {});
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.socket, resolve));
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const connection of this.open) connection.destroy();
    });
  }
}

/** Pickle protocol 2 of (0, n), as fail2ban would answer a ban. */
function okCount(n: number): Buffer {
  const int = Buffer.alloc(4);
  int.writeInt32LE(n);
  return Buffer.concat([Buffer.from([0x80, 0x02, 0x4b, 0x00, 0x4a]), int, Buffer.from([0x86, 0x2e]), END_MARKER]);
}

describe('Fail2banClient against a scripted fake server', function () {
  let dir: string;
  let fakes: FakeFail2ban[] = [];

  async function fake(answer: (args: string[], connection: net.Socket) => void): Promise<FakeFail2ban> {
    const server = new FakeFail2ban(path.join(dir, `fake${fakes.length}.sock`), answer);
    await server.listen();
    fakes.push(server);
    return server;
  }

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'f2b-fake-'));
  });

  afterEach(async () => {
    await Promise.all(fakes.map((server) => server.close()));
    fakes = [];
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(`splits batches into commands of at most ${MAX_ADDRESSES_PER_COMMAND} addresses and sums the counts`, async () => {
    const server = await fake((args, connection) => connection.write(okCount(args.length - 3)));
    const client = new Fail2banClient(server.socket);
    expect(await client.banIps('sync', addresses(1, 2500))).to.equal(2500);
    expect(server.commands.map((args) => args.length - 3)).to.deep.equal([1000, 1000, 500]);
    expect(server.commands.every((args) => args[0] === 'set' && args[1] === 'sync' && args[2] === 'banip')).to.equal(true);
    expect(server.commands.flatMap((args) => args.slice(3))).to.deep.equal(addresses(1, 2500));
    await client.close();
  });

  it('reassembles replies that arrive one byte at a time, and several replies in one packet', async () => {
    const server = await fake((args, connection) => {
      const reply = okCount(Number(args[3]));
      if (args[3] === '7') {
        for (const byte of reply) connection.write(Buffer.from([byte]));
      } else connection.write(reply);
    });
    const client = new Fail2banClient(server.socket);
    const replies = await Promise.all(['7', '8', '9'].map((n) => client.command(['set', 'j', 'banip', n])));
    expect(replies).to.deep.equal([7, 8, 9]);
    await client.close();
  });

  it("times out a command fail2ban never answers, resets the connection and recovers on the next command", async () => {
    // fail2ban answers in order, so nothing after a hung command is answered on that connection.
    const hung = new Set<net.Socket>();
    const server = await fake((args, connection) => {
      if (args[0] === 'hang') hung.add(connection);
      if (!hung.has(connection)) connection.write(okCount(5));
    });
    const client = new Fail2banClient(server.socket, { timeoutMs: 300 });
    const [first, second] = await Promise.all([
      fail2banError(client.command(['hang'])),
      fail2banError(client.command(['set', 'j', 'banip', '1.2.3.4'])),
    ]);
    expect(first.kind).to.equal('timeout');
    expect(first.message).to.include('did not answer "hang" within 300 ms');
    expect(second.kind).to.equal('timeout');
    expect(second.message).to.include('may or may not have been applied');
    expect(await client.command(['set', 'j', 'banip', '1.2.3.4'])).to.equal(5);
    expect(server.connections).to.equal(2);
    await client.close();
  });

  it("reports a garbled reply and fail2ban's ERROR string as 'protocol'", async () => {
    const server = await fake((args, connection) => {
      if (args[0] === 'garbled') connection.write(Buffer.concat([Buffer.from('garbage'), END_MARKER]));
      // what fail2ban answers to a request it cannot unpickle
      else connection.write(Buffer.concat([Buffer.from('80058c174552524f523a2052616e206f7574206f6620696e707574942e', 'hex'), END_MARKER]));
    });
    const client = new Fail2banClient(server.socket);
    const garbled = await fail2banError(client.command(['garbled']));
    expect(garbled.kind).to.equal('protocol');
    expect(garbled.message).to.match(/garbled reply/);
    const error = await fail2banError(client.command(['error']));
    expect(error.kind).to.equal('protocol');
    expect(error.message).to.include('ERROR: Ran out of input');
    await client.close();
  });

  it("rejects everything pending as 'unavailable' when the server drops the connection", async () => {
    const server = await fake((args, connection) => {
      if (args[0] === 'drop') connection.destroy();
    });
    const client = new Fail2banClient(server.socket);
    const errors = await Promise.all([fail2banError(client.command(['wait'])), fail2banError(client.command(['drop']))]);
    expect(errors.map((error) => error.kind)).to.deep.equal(['unavailable', 'unavailable']);
    expect(errors[0]!.message).to.include('may or may not have been applied');
    await waitFor(() => server.connections === 1, 'the fake server to have seen one connection');
    await client.close();
  });
});

describe('fail2ban test harness', function () {
  after(async () => {
    await stopAllFail2ban();
  });

  it('runs a caller-given primary action (with @RUN@ filled in) and parses odd banned strings', async () => {
    const server = await startFail2ban({
      name: 'custom',
      jails: [{ name: 'p', kind: 'primary' }],
      primaryAction: 'mark[tag=hello]',
      actionFiles: { mark: `[Definition]\nactionban = printf '%%s\\n' "<tag> <ip>" >> @RUN@/mark.log\n[Init]\ntag = x\n` },
    });
    try {
      expect(await server.ban('p', '192.0.2.9')).to.equal(1);
      expect(await readFile(path.join(server.runDir, 'mark.log'), 'utf8')).to.equal('hello 192.0.2.9\n');
      // fail2ban stores anything as a "ban"; the list repr must still parse
      await server.ban('p', `a'b"c\\d`);
      expect((await server.banned('p')).sort()).to.deep.equal(['192.0.2.9', `a'b"c\\d`].sort());
    } finally {
      await server.stop();
    }
    expect(await rejectionOf(access(server.dir))).to.have.property('code', 'ENOENT');
  });

  it('fails with the fail2ban log when the server cannot start, leaving nothing behind', async () => {
    const error = await rejectionOf(startFail2ban({ name: 'broken', jails: [{ name: 'p', kind: 'primary' }], primaryAction: 'no-such-action' }));
    expect(error.message).to.match(/fail2ban test server "broken" did not come up/);
    expect(error.message).to.include("Unable to read action 'no-such-action'");
    const dir = /\/\S*?f2b-broken-\w+/.exec(error.message)?.[0];
    expect(dir, 'temp dir named in the message').to.be.a('string');
    expect(await rejectionOf(access(dir!))).to.have.property('code', 'ENOENT');
  });
});
