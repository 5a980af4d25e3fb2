import { expect } from 'chai';
import { pino } from 'pino';
import type { Change } from '../../agent/fleet/projection.js';
import { KernelSets } from '../../agent/sinks/nftables/kernel-sets.js';
import { Nft, NftError } from '../../agent/sinks/nftables/nft.js';
import type { TableShape } from '../../agent/sinks/nftables/nft-script.js';
import { NetNamespace } from '../support/netns.js';
import { setElements as elementsOf, setNames as names } from '../support/nft-sets.js';

const quiet = pino({ level: 'silent' });
const INPUT_DROP: TableShape = { hooks: ['input'], verdict: 'drop', ports: [] };

describe('kernel sets: the nftables table, with real nft in a network namespace', function () {
  this.timeout(60_000);
  let ns: NetNamespace;
  /** What the projection wants, and the ends of bans that end. */
  let wanted: Set<string>;
  let ends: Map<string, number>;

  const kernelSets = (shape = INPUT_DROP, command?: string[]) =>
    new KernelSets({ nft: new Nft({ command: command ?? [...ns.prefix(), 'nft'] }), shape, wanted: () => wanted, endOf: (address) => ends.get(address), log: quiet });

  /** Changes the projection and hands the changes to the sets, as the sink's batcher does. */
  const change = (sets: KernelSets, action: Change['action'], ...addresses: string[]) => {
    for (const address of addresses) {
      if (action === 'ban') wanted.add(address);
      else wanted.delete(address);
    }
    return sets.apply(addresses.map((address) => ({ target: 'syncfail2ban', action, address })));
  };

  beforeEach(async () => {
    ns = await NetNamespace.create();
    wanted = new Set();
    ends = new Map();
  });
  afterEach(() => ns.close());

  it('builds its own table: a host and a network set per family, and a chain at the input hook that drops what they hold', async () => {
    await ns.must('nft', ['add', 'table', 'inet', 'admins']);
    const sets = kernelSets();
    await sets.check();
    const table = await ns.must('nft', ['list', 'table', 'inet', 'syncfail2ban']);
    for (const set of ['hosts_v4', 'nets_v4', 'hosts_v6', 'nets_v6']) expect(table).to.include(`set ${set} {`);
    expect(table).to.match(/type filter hook input priority filter - 10; policy accept;/);
    expect(table).to.include('ip saddr @hosts_v4 counter packets 0 bytes 0 drop');
    expect(table).to.include('ip6 saddr @nets_v6 counter packets 0 bytes 0 drop');
    expect(await ns.must('nft', ['list', 'tables'])).to.include('table inet admins');
  });

  it('writes a ban into the set and takes it out at its unban; an unban of an element already gone does not fail the batch', async () => {
    const sets = kernelSets();
    await change(sets, 'ban', '203.0.113.7', '198.51.100.1');
    expect(await names(ns, 'hosts_v4')).to.have.members(['203.0.113.7', '198.51.100.1']);
    await ns.must('nft', ['delete', 'element', 'inet', 'syncfail2ban', 'hosts_v4', '{ 198.51.100.1 }']);
    const rejections = await change(sets, 'unban', '203.0.113.7', '198.51.100.1');
    expect(rejections).to.deep.equal([]);
    expect(await names(ns, 'hosts_v4')).to.deep.equal([]);
  });

  it('keeps networks apart from single addresses, and only the widest of nested networks in the interval set', async () => {
    const sets = kernelSets();
    await change(sets, 'ban', '10.1.2.0/24', '10.1.2.3', '10.9.0.0/24');
    await change(sets, 'ban', '10.1.0.0/16');
    expect(await names(ns, 'nets_v4')).to.have.members(['10.1.0.0/16', '10.9.0.0/24']);
    expect(await names(ns, 'hosts_v4')).to.deep.equal(['10.1.2.3']);
    await change(sets, 'unban', '10.1.0.0/16');
    expect(await names(ns, 'nets_v4')).to.have.members(['10.1.2.0/24', '10.9.0.0/24']);
    await change(sets, 'unban', '10.1.2.0/24', '10.9.0.0/24');
    expect(await names(ns, 'nets_v4')).to.deep.equal([]);
    expect(await names(ns, 'hosts_v4')).to.deep.equal(['10.1.2.3']);
  });

  it('holds IPv6 addresses and networks in the IPv6 sets', async () => {
    const sets = kernelSets();
    await change(sets, 'ban', '2001:db8::7', '2001:db8:1::/48', '203.0.113.9');
    expect(await names(ns, 'hosts_v6')).to.deep.equal(['2001:db8::7']);
    expect(await names(ns, 'nets_v6')).to.deep.equal(['2001:db8:1::/48']);
    expect(await names(ns, 'hosts_v4')).to.deep.equal(['203.0.113.9']);
    await change(sets, 'unban', '2001:db8::7', '2001:db8:1::/48');
    expect(await names(ns, 'hosts_v6')).to.deep.equal([]);
    expect(await names(ns, 'nets_v6')).to.deep.equal([]);
  });

  it('repairs a flushed set and removes what others put into its sets at a reconciliation', async () => {
    const sets = kernelSets();
    await change(sets, 'ban', '203.0.113.1', '203.0.113.2', '10.4.0.0/16', '2001:db8::1');
    await ns.must('nft', ['flush', 'set', 'inet', 'syncfail2ban', 'hosts_v4']);
    await ns.must('nft', ['flush', 'set', 'inet', 'syncfail2ban', 'nets_v4']);
    await ns.must('nft', ['add', 'element', 'inet', 'syncfail2ban', 'hosts_v6', '{ 2001:db8::99 }']);
    const result = await sets.reconcile();
    expect(result).to.include({ added: 3, removed: 1, retimed: 0 });
    expect(result.elements).to.deep.equal({ hosts_v4: 2, nets_v4: 1, hosts_v6: 1, nets_v6: 0 });
    expect(await names(ns, 'hosts_v4')).to.have.members(['203.0.113.1', '203.0.113.2']);
    expect(await names(ns, 'nets_v4')).to.deep.equal(['10.4.0.0/16']);
    expect(await names(ns, 'hosts_v6')).to.deep.equal(['2001:db8::1']);
    expect(await sets.reconcile()).to.include({ added: 0, removed: 0, retimed: 0 });
  });

  it('rebuilds a deleted table at the next look, and its sets are then stale until reconciled', async () => {
    const sets = kernelSets();
    await sets.check();
    await change(sets, 'ban', '203.0.113.1');
    await sets.reconcile();
    expect(sets.stale).to.equal(false);
    await ns.must('nft', ['delete', 'table', 'inet', 'syncfail2ban']);
    expect((await sets.check()).repaired).to.equal(true);
    expect(sets.stale).to.equal(true);
    expect(await sets.reconcile()).to.include({ added: 1 });
    expect(await names(ns, 'hosts_v4')).to.deep.equal(['203.0.113.1']);
    expect((await sets.check()).repaired).to.equal(false);
  });

  it('rebuilds its chains as configured at start and keeps the elements: forward hook, reject, some ports', async () => {
    await change(kernelSets(), 'ban', '203.0.113.1');
    const sets = kernelSets({ hooks: ['input', 'forward'], verdict: 'reject', ports: [{ from: 22, to: 22 }, { from: 8000, to: 8100 }] });
    await sets.check();
    const table = await ns.must('nft', ['list', 'table', 'inet', 'syncfail2ban']);
    expect(table).to.match(/chain forward \{\s+type filter hook forward priority filter - 10; policy accept;/);
    expect(table).to.include('ip saddr @hosts_v4 meta l4proto { tcp, udp } th dport { 22, 8000-8100 } counter packets 0 bytes 0 reject');
    expect(table.match(/ reject/g)).to.have.length(8);
    expect(await names(ns, 'hosts_v4')).to.deep.equal(['203.0.113.1']);
    await kernelSets().check();
    expect(await ns.must('nft', ['list', 'table', 'inet', 'syncfail2ban'])).not.to.include('chain forward');
  });

  it('gives an element the time left of its ban as its timeout, and rewrites it when the end moves', async () => {
    const sets = kernelSets();
    ends.set('203.0.113.5', Date.now() + 3_600_000);
    await change(sets, 'ban', '203.0.113.5', '203.0.113.6');
    let elements = await elementsOf(ns, 'hosts_v4');
    expect(elements.get('203.0.113.5')).to.be.within(3_590, 3_600);
    expect(elements.get('203.0.113.6')).to.equal(undefined);
    ends.set('203.0.113.5', Date.now() + 7_200_000);
    await change(sets, 'ban', '203.0.113.5');
    expect((await elementsOf(ns, 'hosts_v4')).get('203.0.113.5')).to.be.within(7_190, 7_200);
    // Set by hand to something else: the reconciliation puts the ban's end back.
    await ns.must('nft', ['-f', '-'], 'delete element inet syncfail2ban hosts_v4 { 203.0.113.5 }\nadd element inet syncfail2ban hosts_v4 { 203.0.113.5 timeout 60s, 203.0.113.6 timeout 60s }\n');
    expect(await sets.reconcile()).to.include({ retimed: 2 });
    elements = await elementsOf(ns, 'hosts_v4');
    expect(elements.get('203.0.113.5')).to.be.within(7_190, 7_200);
    expect(elements.get('203.0.113.6')).to.equal(undefined);
  });

  it('refuses an address that is not canonical before nft sees it, and applies the rest of the batch', async () => {
    const sets = kernelSets();
    const rejections = await sets.apply([
      { target: 'syncfail2ban', action: 'ban', address: 'example.com' },
      { target: 'syncfail2ban', action: 'ban', address: '10.0.0.1; flush ruleset' },
      { target: 'syncfail2ban', action: 'ban', address: '203.0.113.8' },
    ]);
    expect(rejections.map((rejection) => rejection.change.address)).to.deep.equal(['example.com', '10.0.0.1; flush ruleset']);
    expect(await names(ns, 'hosts_v4')).to.deep.equal(['203.0.113.8']);
  });

  it('says why nft cannot be used: not installed, or not permitted', async () => {
    const missing = await kernelSets(INPUT_DROP, ['/nonexistent/nft']).check().catch((error: unknown) => error);
    expect(missing).to.be.instanceOf(NftError).and.to.include({ kind: 'missing' });
    expect((missing as NftError).fix).to.include('apt-get install nftables');
    const unprivileged = [...ns.prefix(), 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'nft'];
    const refused = await kernelSets(INPUT_DROP, unprivileged).check().catch((error: unknown) => error);
    expect(refused).to.be.instanceOf(NftError).and.to.include({ kind: 'not-permitted' });
    expect((refused as NftError).fix).to.include('as root');
  });
});
