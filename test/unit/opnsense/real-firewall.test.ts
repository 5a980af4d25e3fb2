/**
 * FirewallSink against the fake as awkward as a real OPNsense (issue 12): privileges on the raw
 * URI, whole-content validation, reconfigure failing on any alias, big and lost listings,
 * the table-entries limit, alias types, the first-entry duplicate, the config lock.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { Projection } from '../../../agent/fleet/projection.js';
import { FirewallSink, type FirewallSinkOptions } from '../../../agent/sinks/opnsense/firewall-sink.js';
import { startFakeOpnsense, type FakeAliasSpec, type FakeApiKey, type FakeOpnsense, type FakeOpnsenseOptions } from '../../fakes/opnsense.js';
import { captureLog } from '../../support/capture-log.js';
import { waitFor } from '../../support/wait.js';

/** What the README asks for: alias_util, reading alias config, states; no "All pages", no alias edit. */
const USER: FakeApiKey = { key: 'sync-key', secret: 'sync-secret', privileges: ['alias_util', 'aliases', 'diagnostics'] };
const EDITOR: FakeApiKey = { key: 'edit-key', secret: 'edit-secret', privileges: ['alias_util', 'alias', 'diagnostics'] };
const UTIL_ONLY: FakeApiKey = { key: 'util-key', secret: 'util-secret', privileges: ['alias_util'] };

/** n distinct IPv4 addresses in the /16 `prefix` (up to 62,500), or in 10/8 for larger n. */
/** What the aliases should hold: the holdings of one origin, through jail-<alias> for each alias. */
class Wanted {
  readonly holdings = new Holdings();
  hold(alias: string, address: string): void {
    this.holdings.add('host-a', `jail-${alias}`, address);
  }
  release(alias: string, address: string): boolean {
    return this.holdings.remove('host-a', `jail-${alias}`, address);
  }
}

const range = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => (n > 62_500 ? `10.${Math.floor(i / 62_500)}.${Math.floor(i / 250) % 250}.${(i % 250) + 1}` : `${prefix}.${Math.floor(i / 250)}.${(i % 250) + 1}`));

describe('OPNsense bridge against the real firewall\'s behaviour', function () {
  this.timeout(120_000);
  let fake: FakeOpnsense;
  let syncs: FirewallSink[] = [];

  async function setUp(
    aliases: FakeAliasSpec[],
    options: { fake?: Partial<FakeOpnsenseOptions>; as?: FakeApiKey; mapped?: string[]; killStates?: boolean; client?: FirewallSinkOptions['client']; reconcileS?: number } = {},
  ) {
    const as = options.as ?? USER;
    fake = await startFakeOpnsense({ keys: [as], aliases, ...options.fake });
    const captured = captureLog();
    const desired = new Wanted();
    const mapped = options.mapped ?? aliases.map((alias) => alias.name);
    const sync = new FirewallSink({
      firewall: { name: fake.url, baseUrl: fake.url, key: as.key, secret: as.secret },
      verifyTls: true,
      ca: readFileSync(fake.caCertPath!),
      killStates: options.killStates ?? false,
      reconcileIntervalS: options.reconcileS ?? 0.2,
      projection: new Projection(new Map(mapped.map((alias) => [`jail-${alias}`, alias]))),
      holdings: desired.holdings,
      state: { markDirty() {}, async writeAhead() {} },
      log: captured.log,
      batcher: { windowMs: 5, retryInitialMs: 20, retryMaxMs: 200 },
      pick: (backend) => backend,
      ...(options.client === undefined ? {} : { client: options.client }),
    });
    syncs.push(sync);
    /** A ban as the bridge gets it from an event. */
    const ban = (alias: string, address: string) => {
      desired.hold(alias, address);
      sync.submit([{ target: alias, action: 'ban', address }]);
    };
    const unban = (alias: string, address: string) => {
      if (desired.release(alias, address)) sync.submit([{ target: alias, action: 'unban', address }]);
    };
    const reconciledAfter = async (since: string) => waitFor(() => ((sync.report().lastReconcile?.at ?? '') > since ? sync.report() : null), 'a reconciliation');
    return { sync, desired, ban, unban, reconciledAfter, ...captured };
  }

  afterEach(async () => {
    await Promise.all(syncs.map((sync) => sync.stop(500)));
    syncs = [];
    await fake?.close();
  });

  describe('killing states (1)', function () {
    it('calls kill_states as the ACL spells it, for new bans only, at most two at a time, never for IPv6', async () => {
      const { sync, ban, lines } = await setUp([{ name: 'bans', type: 'external' }], { killStates: true, reconcileS: 0.2 });
      sync.start();
      const addresses = range(12, '198.51');
      for (const address of addresses) fake.addStates(address, 2);
      fake.addStates('2001:db8::7', 2);
      fake.setLatency(10);
      for (const address of addresses) ban('bans', address);
      ban('bans', '2001:db8::7');
      await waitFor(() => addresses.every((address) => fake.states(address) === 0), 'the states of every new ban killed');
      expect(fake.requests.maxInFlightByEndpoint['diagnostics/firewall/kill_states']).to.be.within(1, 2);
      expect(fake.requests.log.filter((request) => request.endpoint === 'diagnostics/firewall/kill_states' && (JSON.parse(request.body) as { filter: string }).filter.includes(':')), 'no IPv6 filter sent').to.deep.equal([]);
      expect(fake.states('2001:db8::7')).to.equal(2);
      expect(lines.find((line) => line.level === 20 && /not killing the states of 2001:db8::7/.test(String(line.msg)))).to.not.equal(undefined);

      // A reboot empties the alias: reconciliation re-pushes it, without killing anything.
      const kills = fake.requests.byEndpoint['diagnostics/firewall/kill_states'];
      fake.reboot();
      for (const address of addresses) fake.addStates(address, 1);
      await waitFor(() => addresses.every((address) => fake.pfTable('bans').includes(address)), 'the re-push after the reboot');
      expect(fake.requests.byEndpoint['diagnostics/firewall/kill_states']).to.equal(kills);
      expect(fake.states(addresses[0]!)).to.equal(1);
    });
  });

  describe('one alias\'s trouble stays with that alias (2)', function () {
    it('a Host(s) alias with an entry OPNsense refuses: logged once with the fix, unhealthy in status, retried alone, while the other alias goes on', async () => {
      const { sync, ban, lines } = await setUp([
        { name: 'hosts', type: 'host', content: ['192.0.2.1'] },
        { name: 'bans', type: 'external' },
      ]);
      fake.storeInvalidEntry('hosts', '10.1.0.0/16'); // e.g. left behind by an upgrade that tightened validation
      sync.start();
      ban('hosts', '203.0.113.20');
      ban('bans', '203.0.113.21');
      await waitFor(() => fake.pfTable('bans').includes('203.0.113.21'), 'the other alias updated');
      const adds = () => fake.requests.log.filter((request) => request.endpoint === 'firewall/alias_util/add' && request.path.endsWith('/hosts')).length;
      await waitFor(() => adds() >= 4, 'the broken alias retried on its own');
      ban('bans', '203.0.113.22');
      await waitFor(() => fake.pfTable('bans').includes('203.0.113.22'), 'later bans to the other alias too');

      const status = sync.report();
      expect(status.lastError, 'the firewall itself is fine').to.equal(null);
      expect(status.aliases['bans']?.lastError).to.equal(null);
      expect(status.aliases['hosts']?.lastError).to.match(/validates the whole content .*fix or remove that entry/);
      expect(status.aliases['hosts']?.backlog).to.equal(1);
      const logged = lines.filter((line) => line.level === 50 && line['alias'] === 'hosts');
      expect(logged, 'logged once, not per retry').to.have.length(1);
      expect(lines.filter((line) => line['sink'] !== undefined && line['alias'] === 'hosts'), 'nor by its Batcher').to.deep.equal([]);

      fake.defineAlias({ name: 'hosts', type: 'host', content: ['192.0.2.1'] }); // the admin removes the bad entry
      await waitFor(() => fake.pfTable('hosts').includes('203.0.113.20'), 'the alias catches up once fixed');
      await waitFor(() => sync.report().aliases['hosts']?.lastError === null, 'healthy again');
      expect(lines.some((line) => line.level === 30 && /alias "hosts" takes changes again/.test(String(line.msg)))).to.equal(true);
    });

    it('a change an alias refused stops showing once a change to it goes through, whatever another alias refuses meanwhile', async () => {
      const { sync, ban, unban } = await setUp(
        [
          { name: 'hosts', type: 'host' },
          { name: 'others', type: 'host' },
        ],
        { reconcileS: 60 },
      );
      sync.start();
      await waitFor(() => sync.report().lastReconcile?.ok, 'the first reconciliation');
      ban('hosts', '10.60.0.0/16');
      await waitFor(() => sync.report().aliases['hosts']?.lastError, 'the refused network in status');
      expect(sync.report().aliases['hosts']?.lastError).to.match(/"hosts" is a Host\(s\) alias and cannot hold the network 10\.60\.0\.0\/16/);

      unban('hosts', '10.60.0.0/16');
      fake.setLatency(100); // the batch to hosts is still running when the other alias refuses its network
      ban('hosts', '203.0.113.40');
      ban('others', '10.61.0.0/16');
      await waitFor(() => fake.pfTable('hosts').includes('203.0.113.40') && sync.report().aliases['hosts']?.backlog === 0, 'the change to hosts applied');
      const status = await waitFor(() => (sync.report().aliases['others']?.lastError ? sync.report() : null), 'the other alias\'s refusal in status');
      expect(status.aliases['others']?.lastError).to.match(/"others" is a Host\(s\) alias and cannot hold the network/);
      expect(status.aliases['hosts']?.lastError, 'hosts works again').to.equal(null);
      expect(sync.status().measures['alias_failing']).to.deep.include({ values: { hosts: 0, others: 1 } });
    });

    it('a reconfigure that fails because some other alias is broken: the burst goes one address per call instead of retrying forever', async () => {
      const { sync, ban, lines } = await setUp(
        [
          { name: 'hosts', type: 'host' },
          { name: 'theirs', type: 'host', content: ['192.0.2.9'] },
        ],
        { as: EDITOR, mapped: ['hosts'] },
      );
      fake.storeInvalidEntry('theirs', 'not-an-address');
      sync.start();
      const burst = range(30, '10.20');
      for (const address of burst) ban('hosts', address);
      await waitFor(() => burst.every((address) => fake.pfTable('hosts').includes(address)), 'the burst in pf');
      expect(fake.requests.byEndpoint['firewall/alias/reconfigure']).to.be.at.least(1);
      expect(lines.some((line) => line.level === 50 && /reconfigure reloads every alias/.test(String(line.msg)))).to.equal(true);
    });

    it('a user with "Firewall: Aliases" (read only) gets 403 on set_item: the burst goes one address per call', async () => {
      const { sync, ban } = await setUp([{ name: 'hosts', type: 'host' }]);
      sync.start();
      const burst = range(25, '10.21');
      for (const address of burst) ban('hosts', address);
      await waitFor(() => burst.every((address) => fake.pfTable('hosts').includes(address)), 'the burst in pf');
      expect(fake.requests.log.some((request) => request.endpoint === 'firewall/alias/set_item' && request.status === 403)).to.equal(true);
    });

    it('writes to a Host(s) alias two at a time, as the config lock runs them one at a time anyway, so none times out waiting', async () => {
      const { sync, ban, lines } = await setUp([{ name: 'hosts', type: 'host' }], { as: UTIL_ONLY, client: { timeoutMs: 1_000 } });
      fake.setConfigSaveMs(150);
      sync.start();
      const addresses = range(16, '10.22');
      for (const address of addresses) ban('hosts', address);
      await waitFor(() => addresses.every((address) => fake.pfTable('hosts').includes(address)), 'every add', 30_000);
      expect(fake.requests.maxInFlightByEndpoint['firewall/alias_util/add']).to.be.at.most(2);
      expect(lines.filter((line) => /did not answer within/.test(String(line.msg)))).to.deep.equal([]);
    });
  });

  describe('large aliases (3)', function () {
    it('[scale] reconciles a 1,000,000-entry alias with its own listing timeout, while another alias gets its bans meanwhile', async () => {
      const big = range(1_000_000, '10');
      const { sync, ban, desired } = await setUp([{ name: 'big', type: 'external', table: big }, { name: 'bans', type: 'external' }], {
        client: { timeoutMs: 1_000 },
        reconcileS: 600,
        fake: { tableEntriesLimit: 2_000_000 }, // the default (1M) would be full
      });
      fake.setListCost(30); // ~3 s for the big table, far beyond the 1 s of other calls
      desired.hold('big', '203.0.113.30');
      sync.start();
      const bigListing = () => fake.requests.log.find((request) => request.endpoint === 'firewall/alias_util/list' && request.path.endsWith('/big'));
      await waitFor(() => bigListing(), 'the big listing under way');
      ban('bans', '203.0.113.31');
      await waitFor(() => fake.pfTable('bans').includes('203.0.113.31'), 'the other alias updated');
      expect(bigListing()!.status, 'while the big listing still runs').to.equal(0);
      const status = await waitFor(() => (sync.report().lastReconcile?.ok ? sync.report() : null), 'the reconciliation done', 60_000);
      expect(status.lastReconcile?.readded, 'the address missing from the big alias').to.be.at.least(1);
      await waitFor(() => fake.pfTable('big').includes('203.0.113.30'), 'the missing address added to the big alias');
      expect(fake.pfTable('big')).to.have.length(1_000_001);
      expect(status.aliases['big']?.lastError).to.equal(null);
    });

    it('shows an out-of-memory listing in the alias\'s status with the limit, and goes on with the other aliases', async () => {
      const { sync, ban } = await setUp([{ name: 'huge', type: 'external', table: range(120, '10.30') }, { name: 'bans', type: 'external' }], {
        fake: { listMemoryLimitEntries: 100 },
      });
      sync.start();
      ban('bans', '203.0.113.32');
      ban('huge', '203.0.113.33');
      await waitFor(() => fake.pfTable('bans').includes('203.0.113.32'), 'the other alias');
      await waitFor(() => sync.report().aliases['huge']?.lastError, 'the failing listing in status');
      expect(sync.report().aliases['huge']?.lastError).to.match(/PHP runs out of memory near 2 million entries/);
      expect(sync.report().lastError).to.equal(null);
    });
  });

  describe('an empty listing is no proof (4)', function () {
    it("does not take a configd time-out for an empty alias, so an admin's entry is never claimed and removed", async () => {
      const { sync, ban, unban } = await setUp([{ name: 'bans', type: 'external', table: ['192.0.2.50'] }], { reconcileS: 600 });
      fake.configdTimeouts(1);
      sync.start();
      ban('bans', '192.0.2.50'); // the fleet bans the admin's own entry
      ban('bans', '203.0.113.40');
      await waitFor(() => fake.pfTable('bans').includes('203.0.113.40'), 'the ban applied');
      unban('bans', '192.0.2.50');
      unban('bans', '203.0.113.40');
      await waitFor(() => !fake.pfTable('bans').includes('203.0.113.40'), 'the unban applied');
      expect(fake.pfTable('bans')).to.deep.equal(['192.0.2.50']);
      expect(sync.ledger.has('bans', '192.0.2.50')).to.equal(false);
    });

    it('checks the empty listings of a reconciliation against one reading of the table sizes, not one per alias', async () => {
      const names = ['one', 'two', 'three'];
      const { sync } = await setUp(names.map((name) => ({ name, type: 'external' as const })), { reconcileS: 600 });
      sync.start();
      await waitFor(() => sync.report().lastReconcile?.ok, 'the first reconciliation');
      expect(names.every((name) => sync.ledger.listed(name)), 'every empty alias taken as listed').to.equal(true);
      expect(fake.requests.byEndpoint['firewall/alias/get_table_size']).to.equal(1);
    });
  });

  describe('"done" is no proof (5)', function () {
    it('counts what pf did not accept (table-entries limit) and says why, instead of re-adding it silently', async () => {
      const { sync, ban, lines } = await setUp([{ name: 'bans', type: 'external' }], { fake: { tableEntriesLimit: 5 } });
      sync.start();
      const addresses = range(8, '198.51');
      for (const address of addresses) ban('bans', address);
      const status = await waitFor(() => (sync.report().aliases['bans']?.notAccepted === 3 ? sync.report() : null), 'the refused addresses counted');
      expect(fake.pfTable('bans')).to.have.length(5);
      expect(status.aliases['bans']?.lastError).to.match(/3 address\(es\) of alias "bans" were answered "done" but are not in pf \(not accepted by pf\).*table-entries limit.*limit is 5/);
      expect(lines.filter((line) => line.level === 40 && /not accepted by pf/.test(String(line.msg)))).to.have.length(1);
    });
  });

  describe('alias types (6)', function () {
    it('refuses aliases that keep nothing (and says so in the log and status), warns about expire, and takes an alias once fixed', async () => {
      const { sync, ban, lines } = await setUp(
        [
          { name: 'geo', type: 'geoip' },
          { name: 'ports', type: 'port' },
          { name: 'off', type: 'external', enabled: false },
          { name: 'aging', type: 'external', expire: 3600 },
          { name: 'hosts', type: 'host' },
          { name: 'bans', type: 'external' },
        ],
        { mapped: ['geo', 'ports', 'off', 'aging', 'hosts', 'bans', 'nope'] },
      );
      sync.start();
      for (const alias of ['geo', 'ports', 'off', 'aging', 'hosts', 'bans', 'nope']) ban(alias, '203.0.113.50');
      await waitFor(() => ['aging', 'hosts', 'bans'].every((alias) => fake.pfTable(alias).includes('203.0.113.50')), 'the usable aliases updated');
      const status = await waitFor(() => (sync.report().aliases['nope']?.usable === false ? sync.report() : null), 'the verdicts');
      const written = fake.requests.log.filter((request) => request.endpoint === 'firewall/alias_util/add').map((request) => request.path.split('/').pop());
      expect(written).to.not.include.members(['geo', 'ports', 'off', 'nope']);
      expect(status.aliases['geo']).to.include({ type: 'geoip', usable: false });
      expect(status.aliases['geo']?.lastError).to.match(/has type "geoip", which does not keep what is added.*External \(advanced\)/);
      expect(status.aliases['ports']?.lastError).to.match(/type "port"/);
      expect(status.aliases['off']?.lastError).to.match(/is disabled/);
      expect(status.aliases['nope']?.lastError).to.match(/does not exist on the firewall/);
      expect(status.aliases['aging']).to.include({ usable: true, lastError: null });
      expect(status.aliases['aging']?.caveat).to.match(/expire = 3600 s/);
      expect(status.aliases['hosts']?.caveat).to.match(/Host\(s\) alias: every change is a config save/);
      expect(status.aliases['bans']).to.include({ usable: true, lastError: null, caveat: null });
      expect(lines.filter((line) => line.level === 50 && line['alias'] === 'geo'), 'refusal logged once').to.have.length(1);
      expect(lines.some((line) => line.level === 40 && /expire = 3600/.test(String(line.msg)))).to.equal(true);

      fake.defineAlias({ name: 'geo', type: 'external' });
      await waitFor(() => fake.pfTable('geo').includes('203.0.113.50'), 'the fixed alias filled');
      await waitFor(() => sync.report().aliases['geo']?.lastError === null, 'healthy');
    });
  });

  describe('aliases no longer mapped', function () {
    it('forgets what it had added to an alias deleted on the firewall, instead of staying unhealthy about it', async () => {
      const { sync, lines } = await setUp([{ name: 'old', type: 'external' }, { name: 'bans', type: 'external' }], { mapped: ['bans'] });
      sync.ledger.add('old', '203.0.113.70'); // added while "old" was still mapped
      fake.removeAlias('old');
      sync.start();
      await waitFor(() => sync.ledger.aliases().length === 0, 'the ledger of the deleted alias forgotten');
      expect(sync.report().aliases['old']).to.equal(undefined);
      expect(lines.some((line) => line.level === 30 && /alias "old", no longer in \[opn_aliases\], was deleted/.test(String(line.msg)))).to.equal(true);
      expect(lines.filter((line) => Number(line.level) >= 50 && line['alias'] === 'old')).to.deep.equal([]);
    });
  });

  describe('the first-entry duplicate (8)', function () {
    it("never stores an alias's first entry a second time, so an unban leaves nothing behind in config", async () => {
      const { sync, ban, unban } = await setUp([{ name: 'hosts', type: 'host' }], { as: EDITOR });
      sync.start();
      ban('hosts', '203.0.113.60');
      await waitFor(() => fake.configContent('hosts').includes('203.0.113.60'), 'the ban in config');
      // The admin flushes the live table (config keeps the entry): reconciliation finds it missing.
      const flushedAt = new Date().toISOString();
      fake.setPfTable('hosts', []);
      await waitFor(() => ((sync.report().lastReconcile?.at ?? '') > flushedAt ? true : null), 'a reconciliation');
      await waitFor(() => sync.report().backlog === 0, 'its queue drained');
      expect(fake.configContent('hosts')).to.deep.equal(['203.0.113.60']);
      unban('hosts', '203.0.113.60');
      await waitFor(() => fake.configContent('hosts').length === 0, 'the unban in config');
      fake.reboot();
      expect(fake.pfTable('hosts')).to.deep.equal([]);
    });
  });
});
