import { expect } from 'chai';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ActionSocket } from '../../../agent/publishing/action-socket.js';
import { Outbox } from '../../../agent/publishing/outbox.js';
import { NeverBanList } from '../../../src/never-ban.js';
import { measured, measuredBy } from '../../support/status.js';
import { waitFor } from '../../support/wait.js';

const log = pino({ level: 'silent' });

/** A client of the action socket that writes what it is told, in as many pieces, and collects the answers. */
class Client {
  readonly replies: string[] = [];
  private received = '';

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.toString();
      const lines = this.received.split('\n');
      this.received = lines.pop()!;
      this.replies.push(...lines);
    });
  }

  static connect(path: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = connect({ path }, () => resolve(new Client(socket)));
      socket.once('error', reject);
    });
  }
}

describe('the action socket: fail2ban hands this host its bans, one line each, each answered', () => {
  let dir: string;
  let outbox: Outbox;
  let socket: ActionSocket;
  let added = 0;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-action-socket-'));
    outbox = new Outbox(join(dir, 'state'), log, { limit: 3 });
    outbox.load();
    socket = new ActionSocket(join(dir, 'run', 'action.sock'), new Set(['sshd-sync']), new NeverBanList([], []), outbox, () => (added += 1), log);
    await socket.start();
  });

  afterEach(async () => {
    await socket.stop();
    await outbox.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('is a socket only root can use, in a directory only root can enter', async () => {
    expect((await stat(join(dir, 'run', 'action.sock'))).mode & 0o777).to.equal(0o600);
    expect((await stat(join(dir, 'run'))).mode & 0o777).to.equal(0o700);
    expect(socket.status().problems).to.deep.equal([]);
  });

  it('takes valid lines into the outbox, in order, and answers every line in order', async () => {
    const client = await Client.connect(join(dir, 'run', 'action.sock'));
    const now = Date.now() / 1000;
    client.socket.write(`ban sshd 203.0.113.1 ${now} 600 1\nban sshd-sync 203.0.113.2 ${now} -1 1\nunban sshd 203.0.113.1 ${now} 600 1\n`);
    await waitFor(() => client.replies.length === 3, 'three answers');
    expect(client.replies[0]).to.equal('ok');
    expect(client.replies[1]).to.match(/^refused sync-jail: sshd-sync is a sync jail/);
    expect(client.replies[2]).to.equal('ok');
    expect([outbox.at(0)?.action, outbox.at(1)?.action]).to.deep.equal(['ban', 'unban']);
    expect(measured(socket.status(), 'accepted')).to.equal(2);
    expect(measuredBy(socket.status(), 'refused')).to.deep.equal({ 'sync-jail': 1 });
    expect(added).to.be.at.least(1);
    client.socket.destroy();
  });

  it('answers a line longer than allowed once, however many pieces it comes in, and goes on with the next', async () => {
    const client = await Client.connect(join(dir, 'run', 'action.sock'));
    for (let piece = 0; piece < 5; piece++) {
      client.socket.write('9'.repeat(100_000));
      await new Promise((resolve) => setImmediate(resolve));
    }
    client.socket.write(`\nban sshd 203.0.113.3 ${Date.now() / 1000} 600 1\n`);
    await waitFor(() => client.replies.length >= 2, 'two answers');
    expect(client.replies).to.deep.equal(['refused oversized: a line longer than 256 bytes', 'ok']);
    client.socket.destroy();
  });

  it('refuses a ban every agent would refuse, and what a full outbox cannot hold', async () => {
    const client = await Client.connect(join(dir, 'run', 'action.sock'));
    const now = Date.now() / 1000;
    client.socket.write(`ban sshd 127.0.0.1 ${now} 600 1\n${[4, 5, 6, 7].map((i) => `ban sshd 203.0.113.${i} ${now} 600 1`).join('\n')}\n`);
    await waitFor(() => client.replies.length === 5, 'five answers');
    expect(client.replies[0]).to.match(/^refused never-ban: ban of 127\.0\.0\.1 in sshd not published: .*loopback/);
    expect(client.replies.slice(1)).to.deep.equal(['ok', 'ok', 'ok', 'refused outbox-full: the outbox holds 3 events the broker has not taken']);
    expect(outbox.dropped).to.equal(1);
    client.socket.destroy();
  });
});
