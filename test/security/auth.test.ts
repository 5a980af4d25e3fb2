import { expect } from 'chai';
import { barrier } from '../support/barrier.js';
import { BIN } from '../support/paths.js';
import { RawMqtt } from '../support/raw-mqtt.js';
import { connectedClient } from '../support/mqtt-client.js';
import { freePortOn } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { hashWithCli, usersSection } from '../support/users.js';
import { measuredBy, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const PASSWORDS = { 'host-a': 'correct horse battery a', 'host-b': 'correct horse battery b', 'host-c': 'correct horse battery c', admin: 'correct horse battery admin' };

describe('authentication and authorisation at the embedded broker (mesh with [users])', function () {
  this.timeout(120_000);
  let a: SimHost;
  let b: SimHost;
  let port: number;
  const brokerA = () => ({ host: '127.0.0.2', port });

  before(async () => {
    port = await freePortOn(['127.0.0.2', '127.0.0.3']);
    const users = await usersSection(PASSWORDS, hashWithCli);
    [a, b] = await Promise.all(
      (['host-a', 'host-b'] as const).map((name, index) =>
        SimHost.start({
          name,
          ip: `127.0.0.${index + 2}`,
          port,
          peers: [`127.0.0.${3 - index}`],
          extra: [`mqtt_password = ${PASSWORDS[name]}`, 'mq_admins = admin'],
          sections: users,
        }),
      ),
    );
    await Promise.all([a.startAgent(), b.startAgent()]);
    await Promise.all([a.waitSubscribed(2), b.waitSubscribed(2)]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('--hash-password makes a salted scrypt hash that the broker accepts (hosts with accounts sync)', async () => {
    const [first, second] = [await hashWithCli('same password 123'), await hashWithCli('same password 123')];
    expect(first).to.match(/^\$scrypt\$N=16384,r=8,p=1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(first).not.to.equal(second);
    await a.fail2ban.ban('sshd', '203.0.113.40');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.40'), 'the authenticated ban on host-b');
  });

  it('refuses a short password when hashing', async () => {
    const result = await run(process.execPath, [BIN.broker, '--hash-password'], 30_000, 'short\n');
    expect(result.code).to.equal(1);
    expect(result.stderr).to.match(/shorter than 12 characters/);
  });

  it('refuses anonymous clients and wrong passwords', async () => {
    const anonymous = await run('mosquitto_pub', ['-h', '127.0.0.2', '-p', String(port), '-t', 'f2b/sshd/ban', '-m', '203.0.113.41']);
    expect(anonymous.code).not.to.equal(0);
    expect(anonymous.stderr).to.match(/not authori[sz]ed|bad user name or password/i);
    const wrong = await run('mosquitto_pub', ['-h', '127.0.0.2', '-p', String(port), '-u', 'host-b', '-P', 'wrong password', '-t', 'f2b/sshd/ban', '-m', '203.0.113.42']);
    expect(wrong.code).not.to.equal(0);
    const unknown = await run('mosquitto_pub', ['-h', '127.0.0.2', '-p', String(port), '-u', 'nobody', '-P', PASSWORDS['host-a'], '-t', 'f2b/sshd/ban', '-m', '203.0.113.43']);
    expect(unknown.code).not.to.equal(0);
    // host-a's embedded broker refused all three, and says so next to the intake's refusals.
    const { status } = await a.status();
    expect(measuredBy(part(status, 'broker'), 'refused')['auth-failed']).to.be.at.least(3);
    expect(part(status, 'events').measures).to.have.property('refused');

    await b.writeConfig(['mqtt_password = not the password']);
    try {
      const cli = await b.client(['-a', 'sshd', 'banip', '203.0.113.44']);
      expect(cli.code).to.equal(1);
      expect(cli.stderr).to.match(/refused the connection: bad user name or password \(mqtt_username \/ mqtt_password\)/);
    } finally {
      await b.writeConfig();
    }
    // An authenticated bare address speaks for its sender, so each barrier is seen by the other host.
    await barrier(brokerA(), [b], 'sshd', 'sshd-sync', ['-u', 'host-a', '-P', PASSWORDS['host-a']]);
    await barrier(brokerA(), [a], 'sshd', 'sshd-sync', ['-u', 'host-b', '-P', PASSWORDS['host-b']]);
    for (const host of [a, b]) {
      expect((await host.banned('sshd-sync')).filter((ip) => /^203\.0\.113\.4[1-4]$/.test(ip))).to.deep.equal([]);
    }
  });

  it('a host cannot publish an event with another host as origin', async () => {
    const spoofer = await connectedClient(`mqtt://127.0.0.2:${port}`, { username: 'host-b', password: PASSWORDS['host-b'] });
    const closed = new Promise<void>((resolve) => spoofer.once('close', () => resolve()));
    spoofer.publish('f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.45', origin: 'host-a' }), { qos: 1 });
    await closed;
    spoofer.end(true);

    const honest = await connectedClient(`mqtt://127.0.0.2:${port}`, { username: 'host-b', password: PASSWORDS['host-b'] });
    await honest.publishAsync('f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.46', origin: 'host-b' }), { qos: 1 });
    await honest.endAsync();
    await waitFor(async () => (await a.banned('sshd-sync')).includes('203.0.113.46'), "host-b's own event on host-a");
    expect(await a.banned('sshd-sync')).not.to.include('203.0.113.45');
    expect(await b.banned('sshd-sync')).not.to.include('203.0.113.45');
  });

  it("a host cannot publish a snapshot for another origin (it would release that origin's bans); its own goes through", async () => {
    const spoofer = await connectedClient(`mqtt://127.0.0.2:${port}`, { username: 'host-b', password: PASSWORDS['host-b'] });
    const closed = new Promise<void>((resolve) => spoofer.once('close', () => resolve()));
    const forged = { origin: 'host-a', id: '0123456789abcdef', part: 0, parts: 1, ips: ['203.0.113.47'] };
    spoofer.publish('f2b/sshd/snapshot', JSON.stringify(forged), { qos: 1 });
    await closed;
    spoofer.end(true);

    const honest = await connectedClient(`mqtt://127.0.0.2:${port}`, { username: 'host-b', password: PASSWORDS['host-b'] });
    await honest.publishAsync('f2b/sshd/snapshot', JSON.stringify({ ...forged, origin: 'host-b', id: 'fedcba9876543210', ips: ['203.0.113.49'] }), { qos: 1 });
    await honest.endAsync();
    await waitFor(async () => (await a.banned('sshd-sync')).includes('203.0.113.49'), "host-b's own snapshot on host-a");
    expect(await a.banned('sshd-sync')).not.to.include('203.0.113.47');
  });

  it("a bare address from an authenticated host is that host's event: applied by the others, not by itself", async () => {
    const result = await run('mosquitto_pub', ['-h', '127.0.0.2', '-p', String(port), '-u', 'host-b', '-P', PASSWORDS['host-b'], '-q', '1', '-t', 'f2b/sshd/ban', '-m', '203.0.113.48']);
    expect(result.code, result.stderr).to.equal(0);
    await waitFor(async () => (await a.banned('sshd-sync')).includes('203.0.113.48'), 'the stamped event on host-a');
    await barrier(brokerA(), [b], 'sshd', 'sshd-sync', ['-u', 'host-a', '-P', PASSWORDS['host-a']]);
    expect(await b.banned('sshd-sync')).not.to.include('203.0.113.48');
  });

  it('a bare address from an admin account (mq_admins) is applied by every host', async () => {
    const result = await run('mosquitto_pub', ['-h', '127.0.0.2', '-p', String(port), '-u', 'admin', '-P', PASSWORDS.admin, '-q', '1', '-t', 'f2b/sshd/ban', '-m', '203.0.113.38']);
    expect(result.code, result.stderr).to.equal(0);
    for (const host of [a, b]) await waitFor(async () => (await host.banned('sshd-sync')).includes('203.0.113.38'), `the admin's ban on ${host.name}`);
    const unban = await run('mosquitto_pub', ['-h', '127.0.0.2', '-p', String(port), '-u', 'admin', '-P', PASSWORDS.admin, '-q', '1', '-t', 'f2b/sshd/unban', '-m', '203.0.113.38']);
    expect(unban.code, unban.stderr).to.equal(0);
    for (const host of [a, b]) await waitFor(async () => !(await host.banned('sshd-sync')).includes('203.0.113.38'), `the admin's unban on ${host.name}`);
  });

  it("another account's unban of a host's ban changes nothing; an admin's unban clears it everywhere", async () => {
    await b.fail2ban.ban('sshd', '203.0.113.39');
    await waitFor(async () => (await a.banned('sshd-sync')).includes('203.0.113.39'), "host-b's ban on host-a");
    // host-c is an account without admin rights: its bare unban is stamped as host-c's own, and host-c holds nothing.
    const forged = await run('mosquitto_pub', ['-h', '127.0.0.2', '-p', String(port), '-u', 'host-c', '-P', PASSWORDS['host-c'], '-q', '1', '-t', 'f2b/sshd/unban', '-m', '203.0.113.39']);
    expect(forged.code, forged.stderr).to.equal(0);
    await barrier(brokerA(), [a], 'sshd', 'sshd-sync', ['-u', 'host-c', '-P', PASSWORDS['host-c']]);
    expect(await a.banned('sshd-sync'), 'still held by host-b').to.include('203.0.113.39');
    const unban = await run('mosquitto_pub', ['-h', '127.0.0.2', '-p', String(port), '-u', 'admin', '-P', PASSWORDS.admin, '-q', '1', '-t', 'f2b/sshd/unban', '-m', '203.0.113.39']);
    expect(unban.code, unban.stderr).to.equal(0);
    await waitFor(async () => !(await a.banned('sshd-sync')).includes('203.0.113.39'), "the admin's unban on host-a");
  });

  it('refuses, with authentication on, what no agent would accept, whatever its first bytes', async () => {
    const spoofs = [` {"ip":"203.0.113.49","origin":"host-a"}`, `\n{"ip":"203.0.113.49","origin":"host-a"}`, `\ufeff{"ip":"203.0.113.49","origin":"host-a"}`, 'not-an-ip'];
    for (const payload of spoofs) {
      const client = await connectedClient(`mqtt://127.0.0.2:${port}`, { username: 'host-b', password: PASSWORDS['host-b'] });
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      client.publish('f2b/sshd/ban', payload, { qos: 1 });
      await closed;
      client.end(true);
    }
    await barrier(brokerA(), [b], 'sshd', 'sshd-sync', ['-u', 'host-a', '-P', PASSWORDS['host-a']]);
    expect(await b.banned('sshd-sync')).not.to.include('203.0.113.49');
  });

  it('refuses a persistent session, and an account beyond 16 connections, with their own CONNACK codes', async () => {
    const offline = await RawMqtt.open({ host: '127.0.0.2', port, localAddress: '127.0.8.1' });
    offline.connect({ clientId: 'keeps-a-session', clean: false, username: 'host-b', password: PASSWORDS['host-b'] });
    expect(await offline.connack()).to.equal(5);
    // host-b's agent already holds one connection to this broker.
    const held = await Promise.all(Array.from({ length: 15 }, (_, i) => RawMqtt.open({ host: '127.0.0.2', port, localAddress: `127.0.8.${i + 2}` })));
    held.forEach((session, i) => session.connect({ clientId: `held-${i}`, username: 'host-b', password: PASSWORDS['host-b'] }));
    expect(await Promise.all(held.map((session) => session.connack()))).to.deep.equal(Array(15).fill(0));
    const over = await RawMqtt.open({ host: '127.0.0.2', port, localAddress: '127.0.8.30' });
    over.connect({ clientId: 'one-too-many', username: 'host-b', password: PASSWORDS['host-b'] });
    expect(await over.connack()).to.equal(3);
    await Promise.all([offline, ...held, over].map((session) => session.close()));
    const other = await connectedClient(`mqtt://127.0.0.2:${port}`, { username: 'host-a', password: PASSWORDS['host-a'] });
    await other.endAsync();
  });

  it('allows subscribing only under f2b/ and publishing only f2b/<jail>/<action>', async () => {
    const client = await connectedClient(`mqtt://127.0.0.2:${port}`, { username: 'host-b', password: PASSWORDS['host-b'] });
    try {
      for (const topic of ['$SYS/#', '#', 'other/+']) {
        const refused = await client.subscribeAsync(topic, { qos: 1 }).then(
          () => null,
          (error: { packet?: { granted?: number[] } }) => error.packet?.granted,
        );
        expect(refused, topic).to.deep.equal([128]);
      }
      expect((await client.subscribeAsync('f2b/+/+', { qos: 1 })).map((grant) => grant.qos)).to.deep.equal([1]);
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      client.publish('other/topic', '203.0.113.47', { qos: 1 });
      await closed;
    } finally {
      client.end(true);
    }
    await waitFor(async () => (measuredBy(part(await a.agentStatus(), 'broker'), 'refused')['bad-topic'] ?? 0) > 0, 'the broker to count the refused topic');
  });
});
