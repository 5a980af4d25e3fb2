/** AliasWriter (the OPNsense sinks' backend) against the fake OPNsense: both write paths, ownership, and every error class. */
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AliasInfoCache } from '../../../agent/sinks/opnsense/alias-info.js';
import { FirewallLedger } from '../../../agent/sinks/opnsense/ledger.js';
import { AliasWriter, CONCURRENCY, type AliasWriterOptions } from '../../../agent/sinks/opnsense/alias-writer.js';
import { SnapshotJournal } from '../../../agent/state-dir/snapshot-journal.js';
import type { Change } from '../../../agent/fleet/projection.js';
import { OpnsenseClient, OpnsenseError, type OpnsenseErrorKind } from '../../../agent/sinks/opnsense/api/client.js';
import { startFakeOpnsense, type FakeApiKey, type FakeOpnsense } from '../../fakes/opnsense.js';
import { captureLog } from '../../support/capture-log.js';

const ADMIN: FakeApiKey = { key: 'backend-key', secret: 'backend-secret', privileges: ['alias_util', 'alias', 'diagnostics'] };
const UTIL_ONLY: FakeApiKey = { key: 'util-key', secret: 'util-secret', privileges: ['alias_util'] };

const bans = (alias: string, addresses: string[], action: Change['action'] = 'ban'): Change[] => addresses.map((address) => ({ target: alias, action, address }));
const range = (n: number, prefix = '10.9') => Array.from({ length: n }, (_, i) => `${prefix}.${Math.floor(i / 250)}.${(i % 250) + 1}`);

describe('OPNsense backend (one firewall)', function () {
  let fake: FakeOpnsense;
  let clients: OpnsenseClient[] = [];

  function setUp(options: { as?: FakeApiKey; client?: OpnsenseClient; state?: AliasWriterOptions['state'] } = {}) {
    const as = options.as ?? ADMIN;
    const client =
      options.client ??
      new OpnsenseClient({ baseUrl: fake.url, key: as.key, secret: as.secret, verifyTls: true, ca: readFileSync(fake.caCertPath!), maxSockets: CONCURRENCY, timeoutMs: 5_000 });
    clients.push(client);
    const captured = captureLog();
    const ledger = new FirewallLedger(client.firewall);
    const state = { flushes: 0, records: [] as unknown[], markDirty() {}, async writeAhead(records: readonly unknown[]) { state.flushes += 1; state.records.push(...records); } };
    const aliasInfo = new AliasInfoCache(client, captured.log);
    const backend = new AliasWriter({ client, ledger, aliasInfo, holders: () => [], state: options.state ?? state, log: captured.log });
    return { backend, ledger, state, aliasInfo, ...captured };
  }

  beforeEach(async () => {
    fake = await startFakeOpnsense({
      keys: [ADMIN, UTIL_ONLY],
      aliases: [
        { name: 'bans', type: 'external' },
        { name: 'hosts', type: 'host', content: ['192.0.2.1', '192.0.2.2'] },
        { name: 'nets', type: 'network' },
      ],
    });
  });

  afterEach(async () => {
    for (const client of clients) client.close();
    clients = [];
    await fake.close();
  });

  it('adds and removes address by address on an external alias, up to CONCURRENCY at once over kept-alive connections', async () => {
    const { backend, ledger, state } = setUp();
    fake.setLatency(2); // answers overlap only when they take a moment, as on a real firewall
    const addresses = range(300);
    await backend.apply(bans('bans', addresses));
    expect(new Set(fake.pfTable('bans'))).to.deep.equal(new Set(addresses));
    expect(fake.requests.maxInFlight).to.be.within(2, CONCURRENCY);
    expect(fake.requests.connections).to.be.at.most(CONCURRENCY);
    expect(ledger.addresses('bans').size).to.equal(300);
    expect(state.flushes, 'state written ahead of the calls').to.equal(1);
    expect(state.records).to.have.length(300);
    expect(state.records[0]).to.deep.equal([fake.url, 'bans', addresses[0], []]);

    await backend.apply(bans('bans', addresses, 'unban'));
    expect(fake.pfTable('bans')).to.deep.equal([]);
    expect(ledger.addresses('bans').size).to.equal(0);
  });

  it('writes a burst to a host alias with one set_item and reconfigure, keeping entries it did not add', async () => {
    const { backend, ledger } = setUp();
    const addresses = [...range(500), '192.0.2.2'];
    await backend.apply(bans('hosts', addresses));
    expect(fake.requests.byEndpoint['firewall/alias/set_item']).to.equal(1);
    expect(fake.requests.byEndpoint['firewall/alias_util/add'] ?? 0).to.equal(0);
    expect(new Set(fake.configContent('hosts'))).to.deep.equal(new Set(['192.0.2.1', ...addresses]));
    expect(new Set(fake.pfTable('hosts'))).to.deep.equal(new Set(['192.0.2.1', ...addresses]));
    expect(ledger.has('hosts', '192.0.2.2'), "the admin's entry is not the bridge's").to.equal(false);

    await backend.apply(bans('hosts', addresses, 'unban'));
    expect(fake.configContent('hosts')).to.deep.equal(['192.0.2.1', '192.0.2.2']);
    expect(fake.pfTable('hosts').sort()).to.deep.equal(['192.0.2.1', '192.0.2.2']);
  });

  it('writes network alias content with the mask OPNsense stores, and single changes address by address', async () => {
    const { backend } = setUp();
    await backend.apply(bans('nets', [...range(30), '10.50.0.0/16']));
    expect(fake.configContent('nets')).to.include.members(['10.9.0.1/32', '10.50.0.0/16']);
    expect(fake.pfTable('nets')).to.include.members(['10.9.0.1', '10.50.0.0/16']);
    const setItems = fake.requests.byEndpoint['firewall/alias/set_item'];
    await backend.apply(bans('nets', ['10.9.9.9']));
    expect(fake.requests.byEndpoint['firewall/alias/set_item']).to.equal(setItems);
    expect(fake.pfTable('nets')).to.include('10.9.9.9');
  });

  it('never removes an address it did not add', async () => {
    const { backend } = setUp();
    fake.setPfTable('bans', ['198.51.100.1']);
    await backend.apply(bans('bans', ['198.51.100.1'], 'unban'));
    expect(fake.pfTable('bans')).to.deep.equal(['198.51.100.1']);
    expect(fake.requests.byEndpoint['firewall/alias_util/delete'] ?? 0).to.equal(0);
  });

  it('logs a nonexistent alias (firewall, alias, fix) and still updates the other aliases', async () => {
    const { backend, ledger, lines } = setUp();
    const refused = await backend.apply(bans('missing', ['203.0.113.5', '203.0.113.6']));
    expect(await backend.apply(bans('bans', ['203.0.113.7']))).to.deep.equal([]);
    expect(fake.pfTable('bans')).to.deep.equal(['203.0.113.7']);
    const errors = lines.filter((line) => line.level === 50);
    expect(errors, 'one line for the alias, not one per address').to.have.length(1);
    expect(errors[0]!.msg).to.include(fake.url).and.match(/alias "missing" does not exist on the firewall; create the alias missing/);
    expect(errors[0]).to.include({ firewall: fake.url, alias: 'missing', kind: 'nonexistent_alias' });
    expect(ledger.has('missing', '203.0.113.5')).to.equal(false);
    // What the Batcher shows in status until a change to the alias goes through.
    expect(refused.map(({ change }) => change.address)).to.deep.equal(['203.0.113.5', '203.0.113.6']);
    expect(refused[0]!.problem.what).to.match(/does not exist/);
    fake.defineAlias({ name: 'missing', type: 'external' });
    expect(await backend.apply(bans('missing', ['203.0.113.5']))).to.deep.equal([]);
  });

  const wholeFirewall: Array<[number, RegExp]> = [
    [401, /authentication failed .*check the API key and secret/],
    [403, /lacks a privilege .*grant "Diagnostics: PF Table IP addresses"/],
    [404, /not found .*check that the base URL is the firewall's address/],
    [400, /rejected the request as malformed .*please report it/],
    [500, /server error .*will retry/],
  ];
  for (const [status, fix] of wholeFirewall) {
    it(`throws HTTP ${status} (so the Batcher retries) with the firewall, the alias and the fix`, async () => {
      const { backend } = setUp();
      fake.setFailing(status);
      let caught: unknown;
      await backend.apply(bans('bans', ['203.0.113.8'])).catch((error: unknown) => (caught = error));
      expect(caught).to.be.instanceOf(OpnsenseError);
      expect((caught as Error).message).to.include(fake.url).and.include('alias "bans"').and.match(fix);
    });
  }

  const oneAddress: Array<[OpnsenseErrorKind, string]> = [
    ['failed', 'the firewall answered status "failed"'],
    ['not_an_address', 'the firewall does not take "x" as an address; drop or fix the address'],
  ];
  for (const [kind, text] of oneAddress) {
    it(`logs "${kind}" and drops that change instead of retrying the whole firewall`, async () => {
      const stub = {
        firewall: 'https://stub.example',
        close() {},
        list: async () => [],
        getAliasUuid: async () => null,
        tableSizes: async () => null,
        add: async (alias: string) => {
          throw new OpnsenseError(`OPNsense https://stub.example: add x to alias "${alias}": ${text}`, { kind, firewall: 'https://stub.example', endpoint: '/api', alias });
        },
      } as unknown as OpnsenseClient;
      const { backend, lines } = setUp({ client: stub });
      await backend.apply(bans('bans', ['203.0.113.9']));
      const error = lines.find((line) => line.level === 50);
      expect(error).to.include({ firewall: 'https://stub.example', alias: 'bans', kind });
      expect(error?.msg).to.include(text).and.match(/reconciliation tries again/);
    });
  }

  it('refuses a network for a Host(s) alias with a log line instead of a retry loop on the 500', async () => {
    const { backend, lines } = setUp();
    await backend.apply(bans('hosts', ['10.60.0.0/16', '203.0.113.10']));
    expect(fake.pfTable('hosts')).to.include('203.0.113.10').and.not.include('10.60.0.0/16');
    expect(lines.find((line) => line.level === 50)?.msg).to.match(/"hosts" is a Host\(s\) alias and cannot hold the network 10\.60\.0\.0\/16; change the alias type/);
  });

  it('without the alias API privilege, goes address by address and says what to grant', async () => {
    const { backend, lines } = setUp({ as: UTIL_ONLY });
    await backend.apply(bans('hosts', range(25)));
    expect(fake.requests.byEndpoint['firewall/alias_util/add']).to.equal(25);
    expect(lines.find((line) => line.level === 40)?.msg).to.match(/grant "Firewall: Aliases" .* or "Firewall: Alias: Edit"/);
  });

  it('notices a reconfigure that OPNsense skipped (another one running) and succeeds on the retry', async () => {
    const { backend } = setUp();
    fake.setReconfigureMs(400);
    const other = new OpnsenseClient({ baseUrl: fake.url, key: ADMIN.key, secret: ADMIN.secret, verifyTls: true, ca: readFileSync(fake.caCertPath!) });
    clients.push(other);
    const running = other.reconfigure();
    const addresses = range(40, '10.70');
    let caught: unknown;
    await backend.apply(bans('hosts', addresses)).catch((error: unknown) => (caught = error));
    expect((caught as Error | undefined)?.message).to.match(/was saved but pf does not show it yet/);
    await running;
    fake.setReconfigureMs(0);
    await backend.apply(bans('hosts', addresses));
    expect(fake.pfTable('hosts')).to.include.members(addresses);
  });

  it('claims nothing in an alias before it has listed it since start: an admin entry banned by the fleet while the firewall was down stays', async () => {
    const admin = '198.51.100.9';
    fake.setPfTable('bans', [admin]);
    const { backend, ledger } = setUp(); // a fresh start: what others put in the alias is unknown
    await fake.setDown(true);
    let caught: unknown;
    await backend.apply(bans('bans', [admin])).catch((error: unknown) => (caught = error));
    expect((caught as Error | undefined)?.message).to.match(/list alias "bans".*cannot reach the firewall/);
    expect(ledger.has('bans', admin), 'nothing claimed before the listing').to.equal(false);

    await fake.setDown(false);
    await backend.apply(bans('bans', [admin])); // the Batcher's retry
    expect(ledger.has('bans', admin), "the admin's entry is not the bridge's").to.equal(false);
    expect(ledger.isForeign('bans', admin)).to.equal(true);
    await backend.apply(bans('bans', [admin], 'unban'));
    expect(fake.pfTable('bans')).to.include(admin);
    expect(fake.requests.byEndpoint['firewall/alias_util/delete'] ?? 0).to.equal(0);
  });

  it('sends nothing whose claim could not be written ahead, and claims it again on the retry', async () => {
    let broken = true;
    const records: unknown[] = [];
    const state = {
      markDirty() {},
      async writeAhead(batch: readonly unknown[]) {
        if (broken) throw new Error('cannot record the addresses it is about to add: ENOSPC');
        records.push(...batch);
      },
    };
    const { backend, ledger } = setUp({ state });
    let caught: unknown;
    await backend.apply(bans('bans', ['203.0.113.20'])).catch((error: unknown) => (caught = error));
    expect((caught as Error | undefined)?.message, 'thrown, so the Batcher retries').to.match(/ENOSPC/);
    expect(fake.requests.byEndpoint['firewall/alias_util/add'] ?? 0).to.equal(0);
    expect(ledger.has('bans', '203.0.113.20')).to.equal(false);
    broken = false;
    await backend.apply(bans('bans', ['203.0.113.20']));
    expect(records).to.deep.equal([[fake.url, 'bans', '203.0.113.20', []]]);
    expect(fake.pfTable('bans')).to.deep.equal(['203.0.113.20']);
    expect(ledger.has('bans', '203.0.113.20')).to.equal(true);
  });

  it('journals each batch in O(batch) instead of writing the whole state per batch', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sf2b-backend-state-'));
    try {
      let snapshots = 0;
      const { log } = captureLog();
      const file = new SnapshotJournal({
        snapshot: join(dir, 'state.json'),
        journal: join(dir, 'state.json.journal'),
        what: 'the state',
        serialise: () => `{"snapshot":${(snapshots += 1)}}\n`,
        log,
        maxBytes: 2 ** 20,
        compactDelayMs: 60_000,
      });
      const journalled = () => {
        const records: string[][] = [];
        new SnapshotJournal({ snapshot: join(dir, 'state.json'), journal: join(dir, 'state.json.journal'), what: 'a reader', serialise: () => '', log, maxBytes: 2 ** 20, readOnly: true }).load({
          snapshot: () => undefined,
          record: (line) => records.push(JSON.parse(line) as string[]),
        });
        return records;
      };
      file.load({ snapshot: () => undefined, record: () => undefined });
      let writes = 0;
      const { backend } = setUp({
        state: {
          writeAhead: (records) => {
            writes += 1;
            return file.writeAhead(records.map((record) => JSON.stringify(record)));
          },
          markDirty: () => file.markDirty(),
        },
      });
      const addresses = range(1_000, '10.40');
      for (let i = 0; i < addresses.length; i += 50) await backend.apply(bans('bans', addresses.slice(i, i + 50)));
      expect(fake.pfTable('bans')).to.have.length(1_000);
      expect(snapshots, 'no snapshot per batch').to.equal(0);
      expect(writes).to.equal(20);
      expect(journalled().map((record) => record[2])).to.deep.equal(addresses);
      await file.compact();
      expect(snapshots).to.equal(1);
      expect(journalled(), 'the snapshot took the journal in').to.deep.equal([]);
      await file.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps what it added earlier when a later add of the same address fails', async () => {
    const { backend, ledger, aliasInfo } = setUp();
    await backend.apply(bans('bans', ['203.0.113.30']));
    expect(ledger.has('bans', '203.0.113.30')).to.equal(true);
    fake.removeAlias('bans'); // for a while, e.g. while the admin recreates it
    const refused = await backend.apply(bans('bans', ['203.0.113.30', '203.0.113.31'])); // what reconciliation re-queues
    expect(refused.map(({ change }) => change.address)).to.deep.equal(['203.0.113.30', '203.0.113.31']);
    expect(refused[0]!.problem.what).to.match(/does not exist/);
    expect(ledger.has('bans', '203.0.113.30'), 'added earlier: still its own').to.equal(true);
    expect(ledger.has('bans', '203.0.113.31'), 'claimed by the failed batch: not its own').to.equal(false);
    fake.defineAlias({ name: 'bans', type: 'external', table: ['203.0.113.30'] });
    await backend.apply(bans('bans', ['203.0.113.30'], 'unban'));
    expect(fake.pfTable('bans'), 'so it still removes it').to.deep.equal([]);

    // The same for a network refused because the admin made its Network(s) alias a Host(s) alias.
    await backend.apply(bans('nets', ['10.61.0.0/16']));
    expect(ledger.has('nets', '10.61.0.0/16')).to.equal(true);
    fake.defineAlias({ name: 'nets', type: 'host' });
    aliasInfo.clear(); // as every reconciliation does
    const refusedNetwork = await backend.apply(bans('nets', ['10.61.0.0/16']));
    expect(refusedNetwork[0]?.problem.what).to.match(/is a Host\(s\) alias and cannot hold the network/);
    expect(ledger.has('nets', '10.61.0.0/16')).to.equal(true);
  });

  it('when set_item refuses the content, logs it with the fix and goes address by address instead of blocking the firewall', async () => {
    const { backend, ledger, lines, aliasInfo } = setUp();
    fake.refuseSetItem('Entry "legacy" is not a valid hostname, IP address or range.');
    const addresses = range(25, '10.80');
    await backend.apply(bans('hosts', addresses)); // no throw: the Batcher would retry it forever
    expect(fake.requests.byEndpoint['firewall/alias/set_item']).to.equal(1);
    expect(fake.requests.byEndpoint['firewall/alias_util/add']).to.equal(25);
    expect(fake.pfTable('hosts')).to.include.members(addresses);
    expect(ledger.addresses('hosts').size).to.equal(25);
    const error = lines.find((line) => line.level === 50);
    expect(error).to.include({ firewall: fake.url, alias: 'hosts', kind: 'failed' });
    expect(error?.msg).to.include(fake.url).and.match(/alias "hosts".*refused the content \(alias\.content: Entry "legacy".*fix or drop the rejected entries.*one address per call/);
    expect(aliasInfo.bulkRefusal('hosts'), 'shown in status until the next reconciliation').to.match(/refused the content/);

    // Until the next reconciliation the alias is not written in bulk again.
    await backend.apply(bans('hosts', addresses, 'unban'));
    expect(fake.requests.byEndpoint['firewall/alias/set_item']).to.equal(1);
    expect(fake.pfTable('hosts').sort()).to.deep.equal(['192.0.2.1', '192.0.2.2']);
  });
  it('journals a claim taken back (someone else\'s entry, a refused network) before the ledger forgets it', async () => {
    const { backend, ledger, state } = setUp();
    await backend.listAlias('hosts');
    // An admin adds an entry after the listing: the bridge claims it, then finds it there.
    fake.defineAlias({ name: 'hosts', type: 'host', content: ['192.0.2.1', '192.0.2.2', '192.0.2.3'] });
    await backend.apply(bans('hosts', [...range(25), '192.0.2.3', '10.8.0.0/24']));
    expect(ledger.has('hosts', '192.0.2.3')).to.equal(false);
    expect(ledger.isForeign('hosts', '192.0.2.3')).to.equal(true);
    expect(ledger.has('hosts', '10.8.0.0/24')).to.equal(false);
    const records = state.records as unknown[][];
    const about = (address: string) => records.filter((record) => record[2] === address).map((record) => record[3]);
    expect(about('192.0.2.3'), 'claimed, then disowned').to.deep.equal([[], null]);
    expect(about('10.8.0.0/24'), 'claimed, then unclaimed').to.deep.equal([[], null]);
    expect(about('10.9.0.1')).to.deep.equal([[]]);
  });
});
