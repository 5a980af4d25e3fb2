import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeOpnsense, type FakeApiKey, type FakeOpnsense } from '../fakes/opnsense.js';
import { freePortOn } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';
import { bridgeBarrier, bridgeConfig, inAlias, notInAlias } from './fleet.js';

const ALIAS = 'f2b_sshd';
const KEY1: FakeApiKey = { key: 'fw1-key', secret: 'fw1-secret', privileges: ['alias_util', 'alias', 'diagnostics'] };
const KEY2: FakeApiKey = { key: 'fw2-key', secret: 'fw2-secret', privileges: ['alias_util', 'alias', 'diagnostics'] };
const [IP_A, IP_B] = ['127.0.0.2', '127.0.0.3'] as const;

describe('OPNsense bridge (mesh): the bans of every host mirrored into an alias on two firewalls', function () {
  this.timeout(120_000);
  let dir: string;
  let fw1: FakeOpnsense; // external alias: emptied by a reboot
  let fw2: FakeOpnsense; // host alias: kept in config
  let firewalls: FakeOpnsense[];
  let a: SimHost; // fail2ban + agent + bridge
  let b: SimHost; // fail2ban + agent
  let port: number;
  let stateDir: string;
  const brokerOf = (host: SimHost) => ({ host: host.options.ip, port });
  const cli = async (host: SimHost, action: string, address: string) => {
    const result = await host.client(['-a', 'sshd', action, address]);
    expect(result.code, result.stderr).to.equal(0);
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-bridge-mesh-'));
    [fw1, fw2] = await Promise.all([
      startFakeOpnsense({ keys: [KEY1], aliases: [{ name: ALIAS, type: 'external' }] }),
      startFakeOpnsense({ keys: [KEY2], aliases: [{ name: ALIAS, type: 'host' }] }),
    ]);
    firewalls = [fw1, fw2];
    const bridge = await bridgeConfig({ dir, firewalls: [{ fake: fw1, key: KEY1 }, { fake: fw2, key: KEY2 }], aliases: { sshd: ALIAS }, reconcileS: 1 });
    stateDir = bridge.stateDir;
    port = await freePortOn([IP_A, IP_B]);
    [a, b] = await Promise.all([
      SimHost.start({ name: 'bridge-a', ip: IP_A, port, peers: [IP_B], extra: [...bridge.extra, 'ignoreip = 192.0.2.0/24'], sections: bridge.sections }),
      SimHost.start({ name: 'bridge-b', ip: IP_B, port, peers: [IP_A] }),
    ]);
    await Promise.all([a.startAgent(), b.startAgent()]);
    await Promise.all([a.waitSubscribed(2), b.waitSubscribed(2)]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await Promise.all([fw1?.close(), fw2?.close()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("fail2ban bans on any host, the bridge's own included, reach the alias on both firewalls; unbans remove them", async () => {
    await a.fail2ban.ban('sshd', '203.0.113.50');
    await b.fail2ban.ban('sshd', '2001:DB8::50');
    await waitFor(() => inAlias(firewalls, ALIAS, '203.0.113.50') && inAlias(firewalls, ALIAS, '2001:db8::50'), 'both bans on both firewalls');
    expect(fw2.configContent(ALIAS), 'a host alias keeps it in config too').to.include.members(['203.0.113.50', '2001:db8::50']);

    await a.fail2ban.unban('sshd', '203.0.113.50');
    await b.fail2ban.unban('sshd', '2001:db8::50'); // as fail2ban stored it
    await waitFor(() => notInAlias(firewalls, ALIAS, '203.0.113.50') && notInAlias(firewalls, ALIAS, '2001:db8::50'), 'both unbans on both firewalls');
    expect(fw2.configContent(ALIAS)).not.to.include.members(['203.0.113.50']);
  });

  it('never sends loopback, its own addresses or ignoreip to a firewall', async () => {
    for (const address of ['127.0.0.1', '::1', IP_A, '192.0.2.9', '192.0.2.0/25']) {
      const result = await run('mosquitto_pub', ['-h', IP_A, '-p', String(port), '-q', '1', '-t', 'f2b/sshd/ban', '-m', address]);
      expect(result.code, result.stderr).to.equal(0);
    }
    await bridgeBarrier(brokerOf(a), firewalls, ALIAS);
    for (const fake of firewalls) {
      expect(fake.pfTable(ALIAS).filter((entry) => entry.startsWith('127.') || entry === '::1' || entry.startsWith('192.0.2.'))).to.deep.equal([]);
    }
  });

  it('an address banned by two hosts stays until the last of them unbans it', async () => {
    const address = '198.51.100.60';
    await cli(a, 'banip', address);
    await cli(b, 'banip', address);
    await waitFor(() => inAlias(firewalls, ALIAS, address), 'the ban on both firewalls');
    await bridgeBarrier(brokerOf(b), firewalls, ALIAS); // b's ban has been counted

    await cli(a, 'unbanip', address);
    await bridgeBarrier(brokerOf(a), firewalls, ALIAS); // a's unban has been handled
    expect(inAlias(firewalls, ALIAS, address), 'still held by host b').to.equal(true);

    await cli(b, 'unbanip', address);
    await waitFor(() => notInAlias(firewalls, ALIAS, address), 'gone after the last unban');
  });

  it('keeps who holds what across an agent restart, so a later unban still removes the address', async () => {
    const address = '198.51.100.61';
    await cli(a, 'banip', address);
    await cli(b, 'banip', address);
    await waitFor(() => inAlias(firewalls, ALIAS, address), 'the ban on both firewalls');
    await bridgeBarrier(brokerOf(b), firewalls, ALIAS);

    expect(await a.requireAgent().stop()).to.equal(0);
    const saved = (await readFile(join(stateDir, 'holdings.snapshot'), 'utf8')).split('\n');
    expect(saved.filter((line) => line.endsWith(` sshd ${address}`))).to.have.members([`+ bridge-a sshd ${address}`, `+ bridge-b sshd ${address}`]);
    await a.startAgent();
    await a.waitSubscribed(2);

    await cli(a, 'unbanip', address);
    await bridgeBarrier(brokerOf(a), firewalls, ALIAS);
    expect(inAlias(firewalls, ALIAS, address), 'host b still holds it after the restart').to.equal(true);
    await cli(b, 'unbanip', address);
    await waitFor(() => notInAlias(firewalls, ALIAS, address), 'removed by the restarted bridge');
  });

  it('repairs a firewall reboot (external alias emptied) by reconciliation', async () => {
    await cli(b, 'banip', '203.0.113.70');
    await waitFor(() => inAlias(firewalls, ALIAS, '203.0.113.70'), 'the ban on both firewalls');
    const before = [fw1.pfTable(ALIAS).sort(), fw2.pfTable(ALIAS).sort()];
    fw1.reboot();
    fw2.reboot();
    expect(fw1.pfTable(ALIAS)).to.deep.equal([]);
    await waitFor(() => fw1.pfTable(ALIAS).length === before[0]!.length, 'fw1 refilled by reconciliation');
    expect(fw1.pfTable(ALIAS).sort()).to.deep.equal(before[0]);
    expect(fw2.pfTable(ALIAS).sort(), 'a host alias survives the reboot').to.deep.equal(before[1]);
    expect(a.requireAgent().output).to.match(new RegExp(`reconciled OPNsense ${fw1.url.replace(/[.]/g, '\\.')}: queued [1-9]\\d* missing address`));
  });

  it('a firewall that is down for a while ends with the right content once it is back, without holding back the other', async () => {
    await cli(a, 'banip', '203.0.113.80');
    await waitFor(() => inAlias(firewalls, ALIAS, '203.0.113.80'), 'the first ban on both firewalls');
    await fw2.setDown(true);
    await cli(a, 'banip', '203.0.113.81');
    await cli(a, 'unbanip', '203.0.113.80');
    await waitFor(() => inAlias([fw1], ALIAS, '203.0.113.81') && notInAlias([fw1], ALIAS, '203.0.113.80'), 'fw1 up to date while fw2 is down');
    await waitFor(
      () => a.requireAgent().logLines().some((line) => line.firewall === fw2.url && /cannot reach the firewall/.test(String(line.msg))),
      'a log line saying fw2 cannot be reached',
    );
    await fw2.setDown(false);
    await waitFor(() => inAlias([fw2], ALIAS, '203.0.113.81') && notInAlias([fw2], ALIAS, '203.0.113.80'), 'fw2 caught up', 40_000);
  });
});
