import { expect } from 'chai';
import { parseTableListing } from '../../../agent/sinks/nftables/nft-listing.js';
import { ElementScript, tableScript, toElement } from '../../../agent/sinks/nftables/nft-script.js';
import { networkCover } from '../../../agent/sinks/nftables/network-cover.js';

describe('nftables: what goes to nft, and what comes back', () => {
  describe('elements', () => {
    it('takes addresses and networks of canonical shape only, and sorts them into host and network sets per family', () => {
      expect(toElement('203.0.113.7')).to.deep.equal({ text: '203.0.113.7', family: 4, kind: 'hosts' });
      expect(toElement('10.1.0.0/16')).to.deep.equal({ text: '10.1.0.0/16', family: 4, kind: 'nets' });
      expect(toElement('2001:db8::1')).to.deep.equal({ text: '2001:db8::1', family: 6, kind: 'hosts' });
      expect(toElement('2001:db8::/32')).to.deep.equal({ text: '2001:db8::/32', family: 6, kind: 'nets' });
      for (const bad of ['example.com', 'cafe', 'beef:', '10.0.0.1 }', '10.0.0.1; flush ruleset', '10.0.0.1,10.0.0.2', '2001:DB8::1', '2001:db8::1 timeout 1s', '256.1.1.1', '10.1.2.3/33', '2001:db8::/129', '', '@hosts_v4', '10.0.0.1\n']) {
        expect(toElement(bad), bad).to.equal(undefined);
      }
    });

    it('writes one element per line, with its timeout in whole seconds, and knows which change each line came from', () => {
      const script = new ElementScript();
      script.elements('add', 'hosts_v4', [
        { text: '203.0.113.1', owner: 0 },
        { text: '203.0.113.2', timeoutS: 3599.2, owner: 1 },
      ]);
      script.flushSet('nets_v4');
      expect(script.content().toString()).to.equal('add element inet syncfail2ban hosts_v4 {\n203.0.113.1,\n203.0.113.2 timeout 3600s,\n}\nflush set inet syncfail2ban nets_v4\n');
      expect(script.ownersOf([3])).to.deep.equal([1]);
      expect(script.ownersOf([2, 3])).to.deep.equal([0, 1]);
      // A line that is no element's (the command, a flush) names no change.
      expect(script.ownersOf([1])).to.equal(undefined);
      expect(script.ownersOf([5])).to.equal(undefined);
      expect(script.ownersOf([])).to.equal(undefined);
    });
  });

  describe('the table', () => {
    it('keeps existing sets, and rebuilds the chains for the configured hooks, verdict and ports', () => {
      const script = tableScript({ hooks: ['forward'], verdict: 'reject', ports: [{ from: 22, to: 22 }, { from: 8000, to: 8100 }] });
      expect(script).to.include('add set inet syncfail2ban hosts_v4 { type ipv4_addr; flags timeout; }');
      expect(script).to.include('add set inet syncfail2ban nets_v6 { type ipv6_addr; flags interval,timeout; }');
      expect(script).not.to.match(/flush set|delete set|delete table/);
      expect(script).to.include('delete chain inet syncfail2ban input');
      expect(script).to.include('add chain inet syncfail2ban forward { type filter hook forward priority filter - 10; policy accept; }');
      expect(script).to.include('add rule inet syncfail2ban forward ip6 saddr @hosts_v6 meta l4proto { tcp, udp } th dport { 22, 8000-8100 } counter reject');
      expect(script.match(/^add rule/gm)).to.have.length(4);
      expect(script).not.to.include('add chain inet syncfail2ban input {');
    });

    it('blocks all traffic of a banned address when no ports are given', () => {
      const script = tableScript({ hooks: ['input', 'forward'], verdict: 'drop', ports: [] });
      expect(script).to.include('add rule inet syncfail2ban input ip saddr @nets_v4 counter drop');
      expect(script.match(/^add rule/gm)).to.have.length(8);
    });
  });

  describe('nested networks', () => {
    it('keeps only those no wider one of the list contains', () => {
      expect(networkCover(['10.1.2.0/24', '10.1.0.0/16', '10.1.2.128/25', '10.2.0.0/24', '2001:db8::/32', '2001:db8:1::/48', '2001:db9::/48'])).to.deep.equal([
        '10.1.0.0/16',
        '10.2.0.0/24',
        '2001:db8::/32',
        '2001:db9::/48',
      ]);
      expect(networkCover([])).to.deep.equal([]);
    });

    it('takes tens of thousands of networks', () => {
      const networks = Array.from({ length: 50_000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
      expect(networkCover([...networks, '10.0.0.0/8'])).to.deep.equal(['10.0.0.0/8']);
      expect(networkCover(networks)).to.have.length(50_000);
    });
  });

  describe('the listing', () => {
    it('reads sets (with timeouts and networks), chains and rule counters of its own table only', () => {
      const listing = parseTableListing({
        nftables: [
          { metainfo: { version: '1.0.6', json_schema_version: 1 } },
          { table: { family: 'inet', name: 'syncfail2ban', handle: 1 } },
          { set: { family: 'inet', name: 'hosts_v4', table: 'syncfail2ban', type: 'ipv4_addr', flags: ['timeout'], elem: ['203.0.113.1', { elem: { val: '203.0.113.2', timeout: 3600, expires: 3540 } }] } },
          { set: { family: 'inet', name: 'nets_v6', table: 'syncfail2ban', type: 'ipv6_addr', flags: ['interval', 'timeout'], elem: [{ prefix: { addr: '2001:db8::', len: 32 } }, { range: ['2001:db9::1', '2001:db9::9'] }] } },
          { set: { family: 'inet', name: 'nets_v4', table: 'syncfail2ban', type: 'ipv4_addr', flags: ['interval', 'timeout'] } },
          { set: { family: 'ip', name: 'hosts_v4', table: 'other', type: 'ipv4_addr', elem: ['192.0.2.1'] } },
          { chain: { family: 'inet', table: 'syncfail2ban', name: 'input', type: 'filter', hook: 'input', prio: -10, policy: 'accept' } },
          { rule: { family: 'inet', table: 'syncfail2ban', chain: 'input', expr: [{ match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '@hosts_v4' } }, { counter: { packets: 7, bytes: 420 } }, { drop: null }] } },
          { rule: { family: 'inet', table: 'other', chain: 'input', expr: [{ counter: { packets: 99, bytes: 1 } }] } },
        ],
      });
      expect(listing.sets.get('hosts_v4')).to.deep.equal({ type: 'ipv4_addr', flags: ['timeout'], elements: [{ address: '203.0.113.1' }, { address: '203.0.113.2', expiresS: 3540 }] });
      expect(listing.sets.get('nets_v6')!.elements).to.deep.equal([{ address: '2001:db8::/32' }, {}]);
      expect(listing.sets.get('nets_v4')).to.deep.equal({ type: 'ipv4_addr', flags: ['interval', 'timeout'] });
      expect([...listing.chains]).to.deep.equal([['input', 'input']]);
      expect(listing.rules).to.deep.equal([{ chain: 'input', set: 'hosts_v4', packets: 7, bytes: 420 }]);
    });

    it('refuses what is not an nft JSON listing', () => {
      expect(() => parseTableListing({})).to.throw('no "nftables" list');
      expect(() => parseTableListing(null)).to.throw('no "nftables" list');
    });
  });
});
