import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fail2banClient } from '../../src/fail2ban/client.js';
import { OpnsenseClient } from '../../agent/sinks/opnsense/api/client.js';
import { startFakeOpnsense, type FakeApiKey, type FakeOpnsense } from '../fakes/opnsense.js';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.js';
import { freePort } from '../support/ports.js';
import { SimHost, type StatusJson } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';
import { bridgeBarrier, bridgeConfig, inAlias } from './fleet.js';

const KEY1: FakeApiKey = { key: 'fw1-key-c0ffee', secret: 'fw1-secret-c0ffee', privileges: ['alias_util', 'alias', 'diagnostics'] };
const KEY2: FakeApiKey = { key: 'fw2-key-d00d', secret: 'fw2-secret-d00d', privileges: ['alias_util', 'alias', 'diagnostics'] };
const WRONG_SECRET = 'fw2-wrong-secret-beef';
/** Put into fw1's alias by the admin before the bridge ever ran. */
const ADMIN_ENTRY = '192.0.2.250';

describe('OPNsense bridge on a host without fail2ban (hub, f2b_sync = false)', function () {
  this.timeout(180_000);
  let dir: string;
  let hub: Mosquitto;
  let fw1: FakeOpnsense;
  let fw2: FakeOpnsense; // configured with a wrong secret
  let a: SimHost; // fail2ban + agent
  let c: SimHost; // agent running only the bridge
  let metricsPort: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-bridge-hub-'));
    // mosquitto drops QoS 1 messages beyond 1,000 queued per subscriber by default; a -f of
    // 12,000 bans outruns a subscriber's 20 in-flight messages, so the hub must queue more.
    hub = await startMosquitto('max_queued_messages 20000');
    const aliases = [
      { name: 'f2b_sshd', type: 'external' as const, table: [ADMIN_ENTRY] },
      { name: 'f2b_web', type: 'external' as const },
      { name: 'f2b_geo', type: 'geoip' as const }, // a type that keeps nothing: refused
    ];
    [fw1, fw2] = await Promise.all([startFakeOpnsense({ keys: [KEY1], aliases }), startFakeOpnsense({ keys: [KEY2], aliases })]);
    const bridge = await bridgeConfig({
      dir,
      firewalls: [{ fake: fw1, key: KEY1 }, { fake: fw2, key: KEY2, secret: WRONG_SECRET }],
      aliases: { sshd: 'f2b_sshd', web: 'f2b_web', geo: 'f2b_geo' },
      reconcileS: 1,
    });
    const port = await freePort('127.0.0.2');
    metricsPort = await freePort('127.0.0.4');
    [a, c] = await Promise.all([
      SimHost.start({ name: 'hub-bridge-a', ip: '127.0.0.2', port, brokerUrl: hub.url }),
      SimHost.start({ name: 'hub-bridge-c', ip: '127.0.0.4', port, brokerUrl: hub.url, fail2ban: false, jails: {}, extra: [...bridge.extra, `metrics_port = ${metricsPort}`, 'metrics_host = 127.0.0.4'], sections: bridge.sections }),
    ]);
    await Promise.all([a.startAgent(), c.startAgent()]);
  });

  after(async () => {
    await Promise.all([a?.stop(), c?.stop()]);
    await Promise.all([fw1?.close(), fw2?.close(), hub?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('mirrors bans of other hosts without a fail2ban of its own', async () => {
    await a.fail2ban.ban('sshd', '203.0.113.90');
    await waitFor(() => inAlias([fw1], 'f2b_sshd', '203.0.113.90'), 'the ban in fw1');
    const output = c.requireAgent().output;
    expect(output).to.match(/OPNsense bridge started/);
    expect(output).not.to.match(/fail2ban is not reachable|nothing to apply events to/);
  });

  it('says clearly which firewall has wrong credentials, and still updates the other one', async () => {
    await a.fail2ban.ban('sshd', '203.0.113.91');
    await waitFor(() => inAlias([fw1], 'f2b_sshd', '203.0.113.91'), 'the ban in fw1');
    const line = await waitFor(
      () => c.requireAgent().logLines().find((entry) => /authentication failed/.test(String(entry.msg)) && String(entry.msg).includes(fw2.url)),
      "a log line about fw2's credentials",
    );
    expect(line.msg).to.match(/alias "f2b_sshd"|list alias "f2b_(sshd|web)"/);
    expect(line.msg).to.match(/check the API key and secret configured for this firewall/);
    expect(fw2.pfTable('f2b_sshd')).not.to.include('203.0.113.90').and.not.to.include('203.0.113.91');
    const output = c.requireAgent().output;
    for (const secret of [KEY1.secret, KEY2.secret, WRONG_SECRET, Buffer.from(`${KEY2.key}:${WRONG_SECRET}`).toString('base64')]) {
      expect(output, 'no credential in the log').not.to.include(secret);
    }
  });

  it('refuses an alias of a type that keeps nothing: unhealthy in status and metrics with the fix, while the others are updated', async () => {
    const status = await waitFor(async () => {
      const result = await c.client(['status', '--json']);
      return result.stdout.includes('f2b_geo') && result.stdout.includes('geoip') ? result : null;
    }, 'the refused alias in status');
    expect(status.code).to.equal(1);
    const report = JSON.parse(status.stdout) as StatusJson;
    const problem = report.problems.find((candidate) => candidate.what.includes('f2b_geo'));
    expect(problem?.part).to.equal(`sink opnsense ${fw1.url}`);
    expect(problem?.what).to.match(/which does not keep what is added.*External \(advanced\)/);
    const scrape = await (await fetch(`http://127.0.0.4:${metricsPort}/metrics`)).text();
    expect(scrape).to.include(`syncfail2ban_sink_alias_failing{sink="opnsense ${fw1.url}",alias="f2b_geo"} 1`);
    expect(scrape).to.include(`syncfail2ban_sink_alias_failing{sink="opnsense ${fw1.url}",alias="f2b_sshd"} 0`);
    expect(fw1.requests.log.filter((request) => request.endpoint === 'firewall/alias_util/add' && request.path.endsWith('/f2b_geo'))).to.deep.equal([]);
  });

  it('never removes an address it did not add, even when the fleet bans and unbans it', async () => {
    const lists = () => fw1.requests.byEndpoint['firewall/alias_util/list'] ?? 0;
    const start = lists();
    await waitFor(() => lists() >= start + 3, 'a full reconciliation of fw1');
    expect(fw1.pfTable('f2b_sshd')).to.include(ADMIN_ENTRY);

    expect((await a.client(['-a', 'sshd', 'banip', ADMIN_ENTRY])).code).to.equal(0);
    expect((await a.client(['-a', 'sshd', 'unbanip', ADMIN_ENTRY])).code).to.equal(0);
    await bridgeBarrier(hub, [fw1], 'f2b_sshd');
    const after = lists();
    await waitFor(() => lists() >= after + 3, 'a full reconciliation of fw1');
    expect(fw1.pfTable('f2b_sshd')).to.include(ADMIN_ENTRY);
  });

  it('never takes an admin entry for its own when restarted while the firewall is down, even when the fleet bans and unbans it', async () => {
    // Restarted: what it saw in the alias before is forgotten, and fw1 cannot be listed.
    await c.requireAgent().stop();
    await fw1.setDown(true);
    await c.startAgent();
    const before = fw1.requests.log.length;
    expect((await a.client(['-a', 'sshd', 'banip', ADMIN_ENTRY])).code).to.equal(0);
    await waitFor(
      () => c.requireAgent().logLines().find((line) => line.firewall === fw1.url && /cannot reach the firewall/.test(String(line.msg))),
      'the ban tried on the unreachable fw1',
    );

    await fw1.setDown(false);
    await waitFor(
      () => fw1.requests.log.slice(before).some((request) => request.endpoint === 'firewall/alias_util/add' && request.body.includes(ADMIN_ENTRY) && request.status === 200),
      'the ban applied to fw1 once it is back',
    );
    expect((await a.client(['-a', 'sshd', 'unbanip', ADMIN_ENTRY])).code).to.equal(0);
    await bridgeBarrier(hub, [fw1], 'f2b_sshd');
    const lists = () => fw1.requests.byEndpoint['firewall/alias_util/list'] ?? 0;
    const after = lists();
    await waitFor(() => lists() >= after + 3, 'a full reconciliation of fw1');
    expect(fw1.pfTable('f2b_sshd')).to.include(ADMIN_ENTRY);
    expect(fw1.requests.log.slice(before).filter((request) => request.endpoint === 'firewall/alias_util/delete' && request.body.includes(ADMIN_ENTRY))).to.deep.equal([]);
  });

  it('mirrors a jail of 12,000 bans re-sent with syncfail2ban-client -f in full (more than one list page)', async () => {
    // Like a firewall that ignores rowCount=-1: every listing (the bridge's too) takes two 9,999-row pages.
    fw1.capListPage(9_999);
    const addresses = Array.from({ length: 12_000 }, (_, i) => `100.64.${Math.floor(i / 256)}.${i % 256}`);
    const fail2ban = new Fail2banClient(a.fail2ban.socket);
    try {
      expect(await fail2ban.banIps('web', addresses)).to.equal(12_000);
    } finally {
      await fail2ban.close();
    }
    const result = await a.client(['-f', 'web']);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stdout).to.match(/published a snapshot of jail web: 12000 address\(es\)/);

    await waitFor(() => fw1.pfTable('f2b_web').length >= 12_000, '12,000 entries in f2b_web on fw1', 60_000, 250);
    expect(new Set(fw1.pfTable('f2b_web'))).to.deep.equal(new Set(addresses));
    const client = new OpnsenseClient({ baseUrl: fw1.url, key: KEY1.key, secret: KEY1.secret, verifyTls: true, ca: readFileSync(fw1.caCertPath!) });
    try {
      const listed = await client.list('f2b_web');
      expect(listed).to.have.length(12_000);
      expect(new Set(listed)).to.deep.equal(new Set(addresses));
    } finally {
      client.close();
    }
    expect(fw1.requests.log.some((request) => request.endpoint === 'firewall/alias_util/list' && /"current":2/.test(request.body)), 'a second page was asked for').to.equal(true);
  });
});
