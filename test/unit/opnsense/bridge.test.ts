/** OpnsenseBridge in-process: events offered as intake does, the original config keys, the fake as the firewall. */
import { expect } from 'chai';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpnsenseBridge } from '../../../agent/sinks/opnsense/bridge.js';
import type { PickBackend } from '../../../agent/sinks/sink.js';
import { Adoption } from '../../../agent/fleet/adoption.js';
import { FleetState } from '../../../agent/fleet/fleet-state.js';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { parseConfig } from '../../../src/config.js';
import type { Action, SyncEvent } from '../../../src/event.js';
import { mustParseAddress } from '../../../src/ip.js';
import { startFakeOpnsense, type FakeApiKey, type FakeOpnsense } from '../../fakes/opnsense.js';
import { captureLog } from '../../support/capture-log.js';
import { measured, measuredBy } from '../../support/status.js';
import { waitFor } from '../../support/wait.js';
import { entryOf } from '../../bridge/fleet.js';

const KEY: FakeApiKey = { key: 'bridge-key', secret: 'bridge-secret', privileges: ['alias_util', 'alias', 'diagnostics'] };
/** Not a dry run: the backends as they are. */
const real: PickBackend = (backend) => backend;

function event(jail: string, action: Action, ip: string, origin?: string): SyncEvent {
  return { jail, action, address: mustParseAddress(ip), ...(origin === undefined ? {} : { origin }) };
}

describe('OPNsense bridge (in-process)', function () {
  let dir: string;
  let fake: FakeOpnsense;
  let running: OpnsenseBridge[] = [];

  /** The bridge as the agent runs it: the projection of a holdings store loaded from state_dir, events taken by the fleet state. */
  async function startBridge(aliasLines: string[], extra: string[] = [], options: { stateDir?: string; stateWriteDelayMs?: number } = {}) {
    const text = [
      'opn_fw_sync = true',
      `opn_fw_ip = ${entryOf(fake)}`,
      `opn_ca_file = ${fake.caCertPath}`,
      'opn_reconcile_interval = 0.2',
      `state_dir = ${options.stateDir ?? dir}`,
      ...extra,
      '[opn_aliases]',
      ...aliasLines,
      '[opn_keys]',
      `${entryOf(fake)}_key = ${KEY.key}`,
      `${entryOf(fake)}_secret = ${KEY.secret}`,
    ].join('\n');
    const config = parseConfig(text, 'test.cfg');
    const captured = captureLog();
    const { stateDir: _, ...rest } = options;
    const holdings = new Holdings();
    const adoption = new Adoption(config.stateDir);
    const bridge = new OpnsenseBridge(config.opnsense, config.stateDir, holdings, captured.log, { pick: real, adoption, batcher: { windowMs: 5, retryInitialMs: 20, retryMaxMs: 100 }, ...rest });
    const fleet = new FleetState(holdings, config.stateDir, bridge.firewalls, captured.log);
    running.push(bridge);
    fleets.set(bridge, fleet);
    adoption.begin(fleet, fleet.load().fresh);
    await startAll(bridge);
    return { bridge, fleet, offer: (e: SyncEvent) => fleet.apply(e), ...captured };
  }

  const fleets = new Map<OpnsenseBridge, FleetState>();

  /** As the agent starts them: the bridge's state, then its sinks (one per firewall). */
  async function startAll(bridge: OpnsenseBridge) {
    await bridge.start();
    for (const sink of bridge.firewalls) await sink.start();
  }

  /** As the agent stops them: the sinks, then the bridge's state. */
  async function stopAll(bridge: OpnsenseBridge, deadlineMs: number) {
    await Promise.all(bridge.firewalls.map((sink) => sink.stop(deadlineMs)));
    await bridge.stop();
  }

  /** The saved snapshot: its header line (the generation), then the state as one line of JSON. */
  async function savedState() {
    const [header, json, ...rest] = (await readFile(join(dir, 'opnsense-bridge.json'), 'utf8')).split('\n');
    expect(header).to.match(/^\{"generation":\d+\}$/);
    expect(rest).to.deep.equal(['']);
    return JSON.parse(json!) as { added: Record<string, Record<string, string[]>> };
  }

  async function stop(bridge: OpnsenseBridge) {
    await stopAll(bridge, 1_000);
    await fleets.get(bridge)?.close();
    running = running.filter((other) => other !== bridge);
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-bridge-'));
    fake = await startFakeOpnsense({ keys: [KEY], aliases: [{ name: 'bans', type: 'external' }, { name: 'other', type: 'external' }] });
  });

  afterEach(async () => {
    await Promise.all(running.map((bridge) => stopAll(bridge, 100)));
    for (const bridge of running) await fleets.get(bridge)?.close();
    fleets.clear();
    running = [];
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('ignores unmapped jails, counts holders per origin and jail, and treats a bare unban as an admin override of that jail', async () => {
    const { bridge, offer } = await startBridge(['sshd = bans', 'web = bans']);
    expect(offer(event('postfix', 'ban', '203.0.113.1', 'a'))).to.equal('unmapped');
    expect(offer(event('sshd', 'ban', '203.0.113.2', 'a'))).to.equal('queued');
    offer(event('sshd', 'ban', '203.0.113.2', 'b'));
    offer(event('web', 'ban', '203.0.113.2', 'b'));
    offer(event('sshd', 'ban', '203.0.113.3'));
    await waitFor(() => fake.pfTable('bans').length === 2, 'two addresses in the alias');
    expect(measuredBy(bridge.status(), 'wanted'), 'an address held through both jails counts once').to.deep.equal({ bans: 2 });

    offer(event('sshd', 'unban', '203.0.113.2')); // drops a/sshd and b/sshd, not b/web
    offer(event('sshd', 'unban', '203.0.113.3', 'a')); // a never banned it: the manual ban stays
    offer(event('sshd', 'ban', '203.0.113.4', 'a'));
    await waitFor(() => fake.pfTable('bans').includes('203.0.113.4'), 'a later ban');
    expect(fake.pfTable('bans').sort()).to.deep.equal(['203.0.113.2', '203.0.113.3', '203.0.113.4']);
    expect(measuredBy(bridge.status(), 'wanted'), 'held through the second jail only').to.deep.equal({ bans: 3 });
    offer(event('web', 'unban', '203.0.113.2', 'b'));
    offer(event('sshd', 'unban', '203.0.113.3'));
    await waitFor(() => fake.pfTable('bans').length === 1, 'the last holders gone');
    expect(fake.pfTable('bans')).to.deep.equal(['203.0.113.4']);
    expect(measuredBy(bridge.status(), 'wanted')).to.deep.equal({ bans: 1 });
  });

  it("takes a ban out of the alias at its end, as at an unban, while another origin's ban of it stays", async () => {
    const { offer } = await startBridge(['sshd = bans']);
    const sent = Date.now();
    offer({ ...event('sshd', 'ban', '203.0.113.40', 'a'), bantime: 1 });
    offer({ ...event('sshd', 'ban', '203.0.113.41', 'a'), bantime: 1 });
    offer({ ...event('sshd', 'ban', '203.0.113.41', 'b'), bantime: 600 });
    await waitFor(() => fake.pfTable('bans').length === 2, 'both in the alias');
    await waitFor(() => !fake.pfTable('bans').includes('203.0.113.40'), 'the end of the ban', 10_000);
    expect(Date.now() - sent, 'not before its end').to.be.at.least(1_000);
    expect(fake.pfTable('bans'), "b's ban lasts 10 minutes").to.deep.equal(['203.0.113.41']);
  });

  it('reports per firewall: url, reachability, backlog, applied and the last reconciliation', async () => {
    const { bridge, offer } = await startBridge(['sshd = bans']);
    offer(event('sshd', 'ban', '203.0.113.5', 'a'));
    await waitFor(() => fake.pfTable('bans').length === 1, 'the ban applied');
    const applied = new Date().toISOString();
    await waitFor(() => lastReconcile(bridge) > applied, 'a reconciliation after that');
    const status = bridge.status();
    expect(status).to.deep.include({ kind: 'bridge', problems: [], details: { state_file: join(dir, 'opnsense-bridge.json'), persistent: true } });
    expect(measuredBy(status, 'wanted')).to.deep.equal({ bans: 1 });
    const firewall = bridge.firewalls[0]!.status();
    expect(firewall).to.deep.include({ kind: 'sink', name: `opnsense ${fake.url}`, problems: [] });
    expect(firewall.details).to.include({ url: fake.url, reachable: true, last_reconcile_ok: true });
    expect(measured(firewall, 'backlog')).to.equal(0);
    expect(measuredBy(firewall, 'changes_dropped')).to.deep.equal({ refused: 0, 'queue-full': 0, 'shutting-down': 0 });
    expect(measured(firewall, 'changes_applied')).to.be.at.least(1);
    expect(firewall.details['alias bans']).to.deep.equal({ fields: { type: 'external', usable: true, caveat: null } });

    await fake.setDown(true);
    await waitFor(() => bridge.firewalls[0]!.status().details.last_reconcile_ok === false, 'a failed reconciliation');
    const down = bridge.firewalls[0]!.status();
    expect(down.details).to.include({ reachable: false });
    expect(down.problems.map((problem) => problem.what).join('\n')).to.match(/cannot reach the firewall/);
  });

  it('after a restart with a changed [opn_aliases], removes what it had added for the jail no longer mapped there', async () => {
    const first = await startBridge(['sshd = bans', 'web = other']);
    first.offer(event('sshd', 'ban', '203.0.113.6', 'a'));
    first.offer(event('web', 'ban', '203.0.113.7', 'a'));
    await waitFor(() => fake.pfTable('bans').length === 1 && fake.pfTable('other').length === 1, 'both aliases filled');
    await stop(first.bridge);
    const saved = await savedState();
    expect(saved.added[fake.url]).to.deep.equal({ bans: ['203.0.113.6'], other: ['203.0.113.7'] });

    await startBridge(['sshd = bans']);
    await waitFor(() => fake.pfTable('other').length === 0, 'the unmapped alias emptied of what the bridge added');
    expect(fake.pfTable('bans')).to.deep.equal(['203.0.113.6']);
  });

  it('warns when certificates are not verified, and about plain http', async () => {
    const { text } = await startBridge(['sshd = bans'], ['opn_verify = false']);
    expect(text()).to.match(/TLS certificate of OPNsense https:\/\/127\.0\.0\.1:\d+ is not verified \(opn_verify = false\).*set opn_ca_file/);
    const config = parseConfig(['opn_fw_sync = true', 'opn_fw_ip = http://192.0.2.1', '[opn_keys]', 'http://192.0.2.1_key = k', 'http://192.0.2.1_secret = s'].join('\n'), 'test.cfg');
    const captured = captureLog();
    const plain = new OpnsenseBridge(config.opnsense, dir, new Holdings(), captured.log, { pick: real });
    running.push(plain);
    await startAll(plain);
    expect(captured.text()).to.match(/OPNsense http:\/\/192\.0\.2\.1 is reached over plain http/);
    expect(captured.text()).to.match(/\[opn_aliases\] maps no jail/);
  });

  it('reaches a firewall whose GUI is published under a path (opn_fw_ip = https://proxy/fw1/)', async () => {
    const proxied = await startFakeOpnsense({ keys: [KEY], aliases: [{ name: 'bans', type: 'external' }], pathPrefix: '/fw1' });
    try {
      const entry = `https://${proxied.host}:${proxied.port}/fw1/`;
      const config = parseConfig(
        ['opn_fw_sync = true', `opn_fw_ip = ${entry}`, `opn_ca_file = ${proxied.caCertPath}`, `state_dir = ${dir}`, '[opn_aliases]', 'sshd = bans', '[opn_keys]', `${entry}_key = ${KEY.key}`, `${entry}_secret = ${KEY.secret}`].join('\n'),
        'test.cfg',
      );
      const holdings = new Holdings();
      const bridge = new OpnsenseBridge(config.opnsense, config.stateDir, holdings, captureLog().log, { pick: real, batcher: { windowMs: 5 } });
      running.push(bridge);
      await startAll(bridge);
      holdings.add('a', 'sshd', '203.0.113.60');
      bridge.firewalls[0]!.submit([{ target: 'bans', action: 'ban', address: '203.0.113.60' }]);
      await waitFor(() => proxied.pfTable('bans').includes('203.0.113.60'), 'the ban through the path');
      expect(bridge.firewalls[0]!.status().details.url).to.equal(proxied.url).and.match(/\/fw1$/);
      expect(proxied.requests.byEndpoint['unknown'] ?? 0, 'every request under the path').to.equal(0);
      await stop(bridge);
    } finally {
      await proxied.close();
    }
  });

  it('sends no add before its claim is written ahead, and sends it once the state can be written again', async () => {
    const { bridge, lines, offer } = await startBridge(['sshd = bans']);
    const journal = join(dir, 'opnsense-bridge.json.journal');
    await rm(journal);
    await mkdir(journal); // the journal cannot be written (as a full disk would have it)
    offer(event('sshd', 'ban', '203.0.113.40', 'a'));
    await waitFor(() => lines.find((line) => line.level === 50 && /the OPNsense bridge state: cannot write .*opnsense-bridge\.json\.journal \(EISDIR/.test(String(line.msg))), 'the failed write-ahead in the log');
    await waitFor(() => bridge.firewalls[0]!.status().problems.some((problem) => /the OPNsense bridge state: cannot write .*opnsense-bridge\.json\.journal/.test(problem.what)), 'the failure in status');
    expect(fake.requests.log.filter((request) => request.endpoint === 'firewall/alias_util/add'), 'nothing sent without its claim on disk').to.deep.equal([]);
    expect(measured(bridge.firewalls[0]!.status(), 'backlog')).to.equal(1);

    await rm(journal, { recursive: true });
    await waitFor(() => fake.pfTable('bans').includes('203.0.113.40'), 'the ban, once the journal can be written');
    await stop(bridge);
    const saved = await savedState();
    expect(saved.added[fake.url]).to.deep.equal({ bans: ['203.0.113.40'] });
  });

  it('after a crash, knows from the journal what it added and who holds it, with no snapshot written since', async () => {
    const first = await startBridge(['sshd = bans'], [], { stateWriteDelayMs: 600_000 });
    first.offer(event('sshd', 'ban', '203.0.113.41', 'a'));
    first.offer(event('sshd', 'ban', '203.0.113.42', 'b'));
    await waitFor(() => fake.pfTable('bans').length === 2, 'both bans applied');
    const crashed = await mkdtemp(join(tmpdir(), 'sf2b-bridge-crashed-'));
    try {
      await cp(dir, crashed, { recursive: true }); // the disk as a crash would leave it
      expect((await readdir(crashed)).sort(), 'no snapshots yet, only the journals').to.deep.equal(['holdings.journal', 'opnsense-bridge.json.journal']);
      await stop(first.bridge);

      const second = await startBridge(['sshd = bans'], [], { stateDir: crashed });
      expect(measuredBy(second.bridge.status(), 'wanted')).to.deep.equal({ bans: 2 });
      const started = new Date().toISOString();
      await waitFor(() => lastReconcile(second.bridge) > started, 'a reconciliation');
      expect(fake.pfTable('bans').sort(), 'still wanted: kept').to.deep.equal(['203.0.113.41', '203.0.113.42']);
      second.offer(event('sshd', 'unban', '203.0.113.41', 'a'));
      await waitFor(() => !fake.pfTable('bans').includes('203.0.113.41'), 'the unban applied: the address is known as its own');
      expect(fake.pfTable('bans')).to.deep.equal(['203.0.113.42']);
    } finally {
      await rm(crashed, { recursive: true, force: true });
    }
  });

  /** Writes a snapshot of `generation` and a journal, as a crash would leave them. */
  async function writeState(generation: number, wanted: Record<string, Record<string, string[]>>, added: Record<string, string[]>, journal: string[]) {
    await writeFile(join(dir, 'opnsense-bridge.json'), JSON.stringify({ version: 1, generation, wanted, added: { [fake.url]: added } }));
    await writeFile(join(dir, 'opnsense-bridge.json.journal'), journal.map((line) => `${line}\n`).join(''));
  }
  const journalled = (alias: string, address: string, holders: string[] | null) => JSON.stringify([fake.url, alias, address, holders]);

  async function reconciledAfter(bridge: OpnsenseBridge, started: string) {
    await waitFor(() => lastReconcile(bridge) > started && measured(bridge.firewalls[0]!.status(), 'backlog') === 0, 'a reconciliation, applied');
  }

  it('on the first start with a holdings store, adopts the holders a state file of an earlier version kept, and replays a claim taken back (a foreign entry does not become its own)', async () => {
    fake.defineAlias({ name: 'bans', type: 'external', table: ['203.0.113.70', '203.0.113.71'] }); // .70 is an admin's
    await writeState(1, { bans: { '203.0.113.71': ['b/sshd', '@manual/sshd'] } }, { bans: ['203.0.113.71'] }, [
      '{"generation":1}',
      journalled('bans', '203.0.113.70', ['a/sshd']),
      journalled('bans', '203.0.113.70', null),
    ]);
    const { bridge, fleet, offer } = await startBridge(['sshd = bans']);
    expect(fleet.status().holdings, 'holders are kept by the take-back record').to.deep.equal({ sshd: { a: 1, b: 1, '@manual': 1 } });
    await reconciledAfter(bridge, '');
    expect(fake.pfTable('bans').sort(), 'nothing lifted by the upgrade').to.deep.equal(['203.0.113.70', '203.0.113.71']);
    offer(event('sshd', 'unban', '203.0.113.70', 'a'));
    await reconciledAfter(bridge, new Date().toISOString());
    expect(fake.pfTable('bans').sort(), "the admin's entry is not the bridge's to remove").to.deep.equal(['203.0.113.70', '203.0.113.71']);
    await stop(bridge);
    const saved = await savedState();
    expect(saved.added[fake.url] ?? {}).to.deep.equal({ bans: ['203.0.113.71'] });
    expect(saved, 'holders live in the holdings store now').to.not.have.property('wanted');
  });
});

/** When the first firewall was last reconciled (ISO), '' before the first time. */
function lastReconcile(bridge: OpnsenseBridge): string {
  const at = bridge.firewalls[0]!.status().details.last_reconcile;
  return typeof at === 'object' && at !== null && 'time' in at ? at.time : '';
}
