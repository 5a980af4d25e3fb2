import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fail2banClient } from '../../src/fail2ban/client.js';
import { barrier } from '../support/barrier.js';
import { connectedClient } from '../support/mqtt-client.js';
import { freePort, freePortOn } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const IPS = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];

describe('mesh: three hosts, each with its own fail2ban, agent and embedded broker (original config keys)', function () {
  this.timeout(120_000);
  let hosts: SimHost[];
  let port: number;
  let a: SimHost;
  let b: SimHost;
  let c: SimHost;

  before(async () => {
    port = await freePortOn(IPS);
    hosts = await Promise.all(
      IPS.map((ip, index) =>
        SimHost.start({ name: `host-${'abc'[index]}`, ip, port, peers: IPS.filter((peer) => peer !== ip) }),
      ),
    );
    [a, b, c] = hosts as [SimHost, SimHost, SimHost];
    await Promise.all(hosts.map((host) => host.startAgent()));
    await Promise.all(hosts.map((host) => host.waitSubscribed(3)));
  });

  after(async () => {
    await Promise.all((hosts ?? []).map((host) => host.stop()));
  });

  it("a ban by fail2ban on one host reaches every other host's sync jail, and not its own", async () => {
    // fail2ban bans in its primary jail; its sync-action runs the real syncfail2ban-client.
    await a.fail2ban.ban('sshd', '203.0.113.10');
    for (const host of [b, c]) {
      await waitFor(async () => (await host.banned('sshd-sync')).includes('203.0.113.10'), `203.0.113.10 in ${host.name}'s sshd-sync`);
    }
    await barrier({ host: IPS[0]!, port }, hosts);
    expect(await a.banned('sshd-sync')).not.to.include('203.0.113.10');
  });

  it('an unban (ban expiry) on the origin host is removed everywhere', async () => {
    await a.fail2ban.ban('sshd', '203.0.113.11');
    await waitFor(async () => (await c.banned('sshd-sync')).includes('203.0.113.11'), 'the ban on host-c');
    await a.fail2ban.unban('sshd', '203.0.113.11');
    for (const host of [b, c]) {
      await waitFor(async () => !(await host.banned('sshd-sync')).includes('203.0.113.11'), `the unban on ${host.name}`);
    }
  });

  it("fail2ban's own hostile 'bans' in a primary jail run nothing through the sync action and publish nothing", async () => {
    // fail2ban stores any string as a ban and hands it to the action's shell command line.
    const hostile = ["x';touch sf2b-injected-1;'", '$(touch sf2b-injected-2)', '`touch sf2b-injected-3`', 'x"; touch sf2b-injected-4; "', 'a b', '*'];
    for (const text of hostile) await a.fail2ban.ban('sshd', text);
    await a.fail2ban.ban('sshd', '2001:DB8::a1');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('2001:db8::a1'), 'the IPv6 ban through the action');
    await barrier({ host: IPS[0]!, port }, hosts);
    for (const host of [b, c]) {
      expect((await host.banned('sshd-sync')).filter((ip) => hostile.includes(ip))).to.deep.equal([]);
    }
    for (const n of [1, 2, 3, 4]) expect(existsSync(join(process.cwd(), `sf2b-injected-${n}`)), `sf2b-injected-${n}`).to.equal(false);
  });

  it('an IPv6 ban arrives in the canonical form fail2ban uses', async () => {
    const result = await b.client(['-a', 'sshd', 'banip', '2001:DB8:0:0::77']);
    expect(result.code, result.stderr).to.equal(0);
    for (const host of [a, c]) {
      await waitFor(async () => (await host.banned('sshd-sync')).includes('2001:db8::77'), `2001:db8::77 on ${host.name}`);
    }
  });

  it('mosquitto_pub of a bare address into one broker bans on every host mapping the jail', async () => {
    const result = await run('mosquitto_pub', ['-h', IPS[1]!, '-p', String(port), '-t', 'f2b/sshd/ban', '-m', '198.51.100.20']);
    expect(result.code, result.stderr).to.equal(0);
    for (const host of hosts) {
      await waitFor(async () => (await host.banned('sshd-sync')).includes('198.51.100.20'), `198.51.100.20 on ${host.name}`);
    }
  });

  it('-f publishes a snapshot of a jail of 1,000 bans and every peer ends with all of them', async () => {
    const addresses = Array.from({ length: 1000 }, (_, i) => `10.${20 + Math.floor(i / 256)}.${i % 256}.9`);
    const fail2ban = new Fail2banClient(a.fail2ban.socket);
    expect(await fail2ban.banIps('web', addresses)).to.equal(1000);
    await fail2ban.close();

    const result = await a.client(['-f', 'web']);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.match(/published a snapshot of jail web: 1000 address\(es\) in 1 part\(s\), every part acknowledged/);
    for (const host of [b, c]) {
      await waitFor(async () => (await host.banned('web-sync')).length === 1000, `1,000 bans in ${host.name}'s web-sync`, 30_000);
      expect(new Set(await host.banned('web-sync'))).to.deep.equal(new Set(addresses));
    }
    await barrier({ host: IPS[0]!, port }, hosts);
    expect(await a.banned('web-sync')).to.deep.equal([]);
  });

  it('hostile input changes nothing in any fail2ban and leaves every agent running', async () => {
    const before = await Promise.all(hosts.map(async (host) => [await host.banned('sshd-sync'), await host.banned('web-sync')]));
    const dir = await mkdtemp(join(tmpdir(), 'sf2b-hostile-'));
    const big = join(dir, 'big');
    const junk = join(dir, 'junk');
    await writeFile(big, Buffer.alloc(1024 * 1024, 0x31));
    await writeFile(junk, Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x31, 0x2e, 0x32, 0x0a, 0x1b, 0x5b, 0x33, 0x31, 0x6d]));
    const publishes: Array<[string, string[]]> = [
      ['f2b/sshd/ban', ['-m', 'not-an-ip']],
      ['f2b/sshd/ban', ['-m', 'x;touch /tmp/sf2b-pwned']],
      ['f2b/sshd/ban', ['-m', '$(touch /tmp/sf2b-pwned)']],
      ['f2b/sshd/ban', ['-m', '`id`']],
      ['f2b/sshd/ban', ['-m', '*']],
      ['f2b/sshd/ban', ['-m', '999.1.1.1']],
      ['f2b/sshd/ban', ['-m', '1.2.3.4 5.6.7.8']],
      ['f2b/sshd/ban', ['-m', '0.0.0.0/0']],
      ['f2b/sshd/ban', ['-m', '127.0.0.1']],
      ['f2b/sshd/ban', ['-m', '::1']],
      ['f2b/nomap/ban', ['-m', '203.0.113.66']],
      ['f2b/sshd/flush', ['-m', '203.0.113.67']],
      ['f2b/sshd/ban', ['-f', big]],
      ['f2b/sshd/ban', ['-f', junk]],
      ['f2b/sshd/ban', ['-m', '{"ip": 203}']],
      ['f2b/sshd/ban', ['-m', '{"ip": ["203.0.113.68"]}']],
      ['f2b/sshd/ban', ['-m', '{"ip": "203.0.113.69", "origin": {"x": 1}}']],
      ['f2b/sshd/ban', ['-m', '{"ip": null}']],
      ['f2b/sshd/ban', ['-m', '{"__proto__": {"ip": "203.0.113.70"}}']],
      ['f2b/sshd', ['-m', '203.0.113.71']],
      ['f2b/sshd/ban/x', ['-m', '203.0.113.72']],
      ['$SYS/broker/x', ['-m', '203.0.113.73']],
    ];
    try {
      for (const [topic, args] of publishes) {
        await run('mosquitto_pub', ['-h', IPS[2]!, '-p', String(port), '-q', '1', '-t', topic, ...args]);
      }
      await barrier({ host: IPS[2]!, port }, hosts);
      for (const [index, host] of hosts.entries()) {
        const [sshd, web] = before[index]!;
        const after = await host.banned('sshd-sync');
        expect(after.filter((ip) => !ip.startsWith('198.18.'))).to.deep.equal(sshd!.filter((ip) => !ip.startsWith('198.18.')));
        expect(await host.banned('web-sync')).to.deep.equal(web);
        expect(host.requireAgent().alive, `${host.name}'s agent is running`).to.equal(true);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a retained publish is delivered live but not stored', async () => {
    const result = await run('mosquitto_pub', ['-h', IPS[0]!, '-p', String(port), '-q', '1', '-r', '-t', 'f2b/sshd/ban', '-m', '203.0.113.80']);
    expect(result.code, result.stderr).to.equal(0);
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.80'), 'the retained publish delivered live');

    // A later subscriber: if anything were retained, the broker would send it right after SUBACK,
    // before the marker published afterwards through the same broker.
    const late = await connectedClient(`mqtt://${IPS[0]}:${port}`);
    const received: Array<{ topic: string; payload: string; retain: boolean }> = [];
    late.on('message', (topic, payload, packet) => received.push({ topic, payload: payload.toString(), retain: packet.retain }));
    try {
      await late.subscribeAsync('f2b/#', { qos: 1 });
      await late.publishAsync('f2b/marker/ban', '203.0.113.81', { qos: 1 });
      await waitFor(() => received.some((message) => message.topic === 'f2b/marker/ban'), 'the marker');
      // The broker writes the connection it came on into every event (the README's Rate limits).
      expect(received).to.deep.equal([{ topic: 'f2b/marker/ban', payload: '{"ip":"203.0.113.81","via":"127.0.0.1"}', retain: false }]);
    } finally {
      await late.endAsync(true);
    }
  });

  it('the CLI fails fast with a clear message when the broker is down', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sf2b-down-'));
    const closedPort = await freePort('127.0.0.1');
    const silent = createServer(() => undefined); // accepts TCP, never answers MQTT
    await new Promise<void>((resolve) => silent.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const silentPort = (silent.address() as { port: number }).port;
    try {
      const config = (p: number) => `mq_ip = 127.0.0.1\nmq_port = ${p}\nconnection_timeout = 1\n[jails]\nsshd = sshd-sync\n`;
      await writeFile(join(dir, 'closed.cfg'), config(closedPort));
      await writeFile(join(dir, 'silent.cfg'), config(silentPort));

      const refused = await run(process.execPath, [join(process.cwd(), 'dist/cli/main.js'), '--config', join(dir, 'closed.cfg'), '-a', 'sshd', 'banip', '203.0.113.90'], 20_000);
      expect(refused.code).to.equal(1);
      expect(refused.stderr).to.match(/cannot publish to the broker at mqtt:\/\/127\.0\.0\.1:\d+: connection refused/);

      const hung = await run(process.execPath, [join(process.cwd(), 'dist/cli/main.js'), '--config', join(dir, 'silent.cfg'), '-a', 'sshd', 'banip', '203.0.113.90'], 20_000);
      expect(hung.code, 'exits on its own, not killed by the 20 s guard').to.equal(1);
      expect(hung.stderr).to.match(/no answer from the broker at mqtt:\/\/127\.0\.0\.1:\d+ within 1000 ms/);
    } finally {
      silent.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('bad arguments give a clear message and a non-zero exit', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['-a', 'sshd', 'banip', '999.1.1.1'], /"999\.1\.1\.1" is not a valid address/],
      [['-a', 'sshd', 'banip', 'x;touch /tmp/sf2b-pwned'], /is not a valid address/],
      [['-a', 'sshd', 'explode', '203.0.113.1'], /action must be ban, unban, banip or unbanip/],
      [['-a', 'ss hd', 'banip', '203.0.113.1'], /is not a valid jail name/],
      [['-a', 'sshd'], /action must be/],
    ];
    for (const [args, message] of cases) {
      const result = await a.client(args);
      expect(result.code, args.join(' ')).to.equal(2);
      expect(result.stderr).to.match(message);
    }
  });

  it('an agent reconnects to a peer that went away and came back', async () => {
    const linkToB = async () => part(await a.agentStatus(), 'link', `mqtt://${IPS[1]}:${port}`).details.state;
    await b.requireAgent().stop();
    await waitFor(async () => (await linkToB()) === 'down', "a's link to b's broker down");
    await b.startAgent();
    await b.waitSubscribed(3);
    // a's link to b's broker must have come back on its own
    await waitFor(async () => (await linkToB()) === 'connected', "a reconnected to b's broker");
    const result = await b.client(['-a', 'sshd', 'banip', '203.0.113.95']);
    expect(result.code, result.stderr).to.equal(0);
    await waitFor(async () => (await a.banned('sshd-sync')).includes('203.0.113.95'), 'the ban from the restarted host on a');
  });
});
