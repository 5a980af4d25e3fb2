import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { startBroker, type RunningBroker } from '../../broker/broker.js';
import { DEFAULT_BROKER_LIMITS } from '../../src/config-security.js';
import { bridgeConfig, inAlias, notInAlias } from '../bridge/fleet.js';
import { startFakeOpnsense, type FakeApiKey, type FakeOpnsense } from '../fakes/opnsense.js';
import { connectedClient } from '../support/mqtt-client.js';
import { freePort } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { measured, measuredBy, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const COUNT = 100;

/** What these tests read of `syncfail2ban-client status --json`. */
interface Seen {
  accepted: number;
  refused: (reason: string) => number;
  links: string[];
}

describe('SIGHUP: the agent re-reads its config without dropping what it accepted', function () {
  this.timeout(180_000);
  let host: SimHost;
  let peer: RunningBroker;
  let source: MqttClient;
  let local: string;

  /** Publishes on this host's broker over a new connection each time. */
  async function publishLocally(messages: Array<[string, string]>): Promise<void> {
    await source?.endAsync(true);
    source = await connectedClient(local);
    for (const [topic, payload] of messages) await source.publishAsync(topic, payload, { qos: 1 });
  }

  async function seen(): Promise<Seen> {
    const status = await host.agentStatus();
    const refused = measuredBy(part(status, 'events'), 'refused');
    return { accepted: measured(part(status, 'events'), 'accepted'), refused: (reason) => refused[reason] ?? 0, links: status.parts.flatMap((link) => (link.kind === 'link' ? [link.name!] : [])) };
  }

  /** Sends SIGHUP; resolves with the outcome logged: "config reloaded", "reload refused: ..." or "reload failed: ...". */
  async function reload(): Promise<string> {
    const agent = host.requireAgent();
    const outcomes = () => agent.logLines().map((line) => String(line.msg)).filter((msg) => msg === 'config reloaded' || /^reload (refused|failed): /.test(msg));
    const before = outcomes().length;
    agent.child.kill('SIGHUP');
    await waitFor(() => outcomes().length > before, 'the agent to answer SIGHUP', 30_000);
    return outcomes()[before]!;
  }

  before(async () => {
    const ip = '127.0.0.12';
    // Limits above what the tests send: the bans published through a reload are not a flood.
    host = await SimHost.start({ name: 'reloader', ip, port: await freePort(ip), extra: ['rate_limit = 100000', 'rate_burst = 1000000'] });
    // fail2ban runs both sync jails; the config starts with sshd alone.
    host.options.jails = { sshd: 'sshd-sync' };
    await host.writeConfig();
    await host.startAgent();
    local = `mqtt://${ip}:${host.options.port}`;
    peer = await startBroker({ host: '127.0.0.1', port: await freePort(), log: pino({ level: 'silent' }), security: { users: new Map(), admins: new Set(), limits: DEFAULT_BROKER_LIMITS }, rateLimit: { perSecond: 1_000, burst: 1_000 } });
  });

  after(async () => {
    await source?.endAsync(true);
    await host?.stop();
    await peer?.close();
  });

  it('new jails, ignoreip and peers take effect; bans accepted before the reload still reach fail2ban', async () => {
    const agent = host.requireAgent();
    const fail2banPid = host.fail2ban.pid!;
    const addresses = Array.from({ length: COUNT }, (_, i) => `198.51.100.${i + 1}`);
    process.kill(fail2banPid, 'SIGSTOP');
    try {
      await publishLocally(addresses.map((ip) => ['f2b/sshd/ban', JSON.stringify({ ip, origin: 'peer-a' })]));
      await waitFor(async () => (await seen()).accepted === COUNT, `the agent to accept ${COUNT} bans`);

      host.options.jails = { sshd: 'sshd-sync', web: 'web-sync' };
      host.options.peers = [`127.0.0.1:${peer.port}`];
      await host.writeConfig(['ignoreip = 203.0.113.99']);
      // fail2ban stays frozen through the whole reload: the stopping agent cannot flush.
      expect(await reload()).to.equal('config reloaded');
    } finally {
      process.kill(fail2banPid, 'SIGCONT');
    }
    await waitFor(async () => (await host.banned('sshd-sync')).length === COUNT, 'every ban accepted before the reload in sshd-sync');
    expect(new Set(await host.banned('sshd-sync'))).to.deep.equal(new Set(addresses));

    // The peer added to sync_servers is subscribed to; a ban published there for the new jail lands.
    await waitFor(() => agent.logLines().some((line) => line.msg === 'subscribed to f2b/+/+' && line.broker === `mqtt://127.0.0.1:${peer.port}`), 'a subscription on the new peer');
    const onPeer = await connectedClient(`mqtt://127.0.0.1:${peer.port}`);
    await onPeer.publishAsync('f2b/web/ban', JSON.stringify({ ip: '192.0.2.77', origin: 'peer-b' }), { qos: 1 });
    await onPeer.endAsync(true);
    await waitFor(async () => (await host.banned('web-sync')).includes('192.0.2.77'), 'the new jail web to be applied');

    // ignoreip now protects 203.0.113.99.
    await publishLocally([['f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.99', origin: 'peer-a' })]]);
    await waitFor(async () => (await seen()).refused('never-ban') === 1, 'the ban of an ignoreip address to be refused');
    expect(await host.banned('sshd-sync')).not.to.include('203.0.113.99');
  });

  it('the broker and links keep running through a reload: bans published meanwhile all reach fail2ban', async () => {
    const agent = host.requireAgent();
    const fail2banPid = host.fail2ban.pid!;
    const publishing = await connectedClient(local);
    let closed = false;
    publishing.on('close', () => (closed = true));
    const sent: string[] = [];
    const send = async () => {
      const ip = `45.1.${Math.floor(sent.length / 250)}.${(sent.length % 250) + 1}`;
      sent.push(ip);
      await publishing.publishAsync('f2b/sshd/ban', JSON.stringify({ ip, origin: 'peer-c' }), { qos: 1 });
    };
    // fail2ban frozen: the stopping agent waits for its flush, and bans keep arriving in that window.
    process.kill(fail2banPid, 'SIGSTOP');
    try {
      for (let i = 0; i < 100; i++) await send();
      await host.writeConfig(['ignoreip = 203.0.113.98']);
      let answered = false;
      const reloaded = reload().finally(() => (answered = true));
      while (!answered && sent.length < 50_000) await send();
      expect(await reloaded).to.equal('config reloaded');
      for (let i = 0; i < 100; i++) await send();
    } finally {
      process.kill(fail2banPid, 'SIGCONT');
    }
    expect(closed, 'the connection to the broker closed during the reload').to.equal(false);
    await publishing.endAsync();
    const held = agent.logLines().find((line) => /^\d+ message\(s\) received during the reload handed to the new intake$/.test(String(line.msg)));
    expect(held, 'bans held while no intake ran').not.to.equal(undefined);
    await waitFor(async () => {
      const banned = new Set(await host.banned('sshd-sync'));
      return sent.every((ip) => banned.has(ip));
    }, `all ${sent.length} bans published during the reload in sshd-sync`, 60_000);
  });

  it('a peer taken out of sync_servers is dropped', async () => {
    host.options.peers = [];
    await host.writeConfig();
    expect(await reload()).to.equal('config reloaded');
    await waitFor(async () => !(await seen()).links.includes(`mqtt://127.0.0.1:${peer.port}`), 'the link to the removed peer to go');
    expect((await seen()).links).to.deep.equal([local]);
  });

  it('an invalid config is refused with the reason; the running config stays in force', async () => {
    const agent = host.requireAgent();
    await host.writeConfig(['mq_port = 99999']);
    expect(await reload()).to.match(/^reload refused: .*mq_port: "99999" is not a whole number from 1 to 65535; fix: .*; the running config is kept$/);
    expect(agent.alive).to.equal(true);
    await publishLocally([['f2b/web/ban', JSON.stringify({ ip: '192.0.2.88', origin: 'peer-d' })]]);
    await waitFor(async () => (await host.banned('web-sync')).includes('192.0.2.88'), 'the running config (with web) still to apply bans');
  });
});

describe('SIGHUP: rate limits and the OPNsense bridge settings take effect', function () {
  this.timeout(180_000);
  const KEY: FakeApiKey = { key: 'fw-key', secret: 'fw-secret', privileges: ['alias_util', 'alias', 'diagnostics'] };
  let dir: string;
  let fw: FakeOpnsense;
  let host: SimHost;
  let bridge: Awaited<ReturnType<typeof bridgeConfig>>;
  let ip: string;

  /** Publishes each address as a ban on one connection, as fast as mosquitto_pub goes (QoS 0: a refused message gets no acknowledgement to wait for). */
  function publishAll(addresses: string[]) {
    return run('mosquitto_pub', ['-h', ip, '-p', String(host.options.port), '-q', '0', '-t', 'f2b/sshd/ban', '-l'], 30_000, `${addresses.join('\n')}\n`);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-reload-bridge-'));
    fw = await startFakeOpnsense({ keys: [KEY], aliases: [{ name: 'f2b_old', type: 'external' }, { name: 'f2b_new', type: 'external' }] });
    bridge = await bridgeConfig({ dir, firewalls: [{ fake: fw, key: KEY }], aliases: { sshd: 'f2b_old' }, reconcileS: 1 });
    ip = '127.0.0.13';
    host = await SimHost.start({ name: 'reload-bridge', ip, port: await freePort(ip), extra: bridge.extra, sections: bridge.sections });
    await host.startAgent();
  });

  after(async () => {
    await host?.stop();
    await fw?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a new alias for a jail gets its bans and the old one is emptied; a lower rate_limit refuses a flood', async () => {
    const result = await publishAll(['203.0.113.21', '203.0.113.22']);
    expect(result.code, result.stderr).to.equal(0);
    await waitFor(() => inAlias([fw], 'f2b_old', '203.0.113.21') && inAlias([fw], 'f2b_old', '203.0.113.22'), 'both bans in f2b_old');

    const sections = bridge.sections.map((line) => (line === 'sshd = f2b_old' ? 'sshd = f2b_new' : line));
    host.options.sections = sections;
    await host.writeConfig(['rate_limit = 1', 'rate_burst = 5']);
    const agent = host.requireAgent();
    agent.child.kill('SIGHUP');
    await waitFor(() => agent.logLines().some((line) => line.msg === 'config reloaded'), 'the reload');

    await waitFor(() => inAlias([fw], 'f2b_new', '203.0.113.21') && inAlias([fw], 'f2b_new', '203.0.113.22'), 'the held bans in the newly mapped alias');
    await waitFor(() => notInAlias([fw], 'f2b_old', '203.0.113.21') && notInAlias([fw], 'f2b_old', '203.0.113.22'), 'the alias no longer mapped emptied');

    await host.waitSubscribed(1);
    const flood = Array.from({ length: 50 }, (_, i) => `198.51.100.${i + 1}`);
    await publishAll(flood);
    await waitFor(async () => {
      const { status } = await host.status();
      const refused = { ...measuredBy(part(status, 'broker'), 'refused'), ...measuredBy(part(status, 'events'), 'refused') };
      return (refused['rate-limited'] ?? 0) > 0;
    }, 'the flood to be rate-limited');
    expect(fw.pfTable('f2b_new').filter((entry) => flood.includes(entry)).length).to.be.below(flood.length);
  });
});
