import { isIPv4 } from 'node:net';
import { expect } from 'chai';
import ipaddr from 'ipaddr.js';
import { canonicalText, mustParseAddress, parseAddress, plainIPv4 } from '../../../src/ip.js';
import { NeverBanList } from '../../../src/never-ban.js';

describe('address validation', () => {
  const canonical: Array<[string, string]> = [
    ['203.0.113.7', '203.0.113.7'],
    ['2001:DB8:0:0::1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['10.0.1.7/24', '10.0.1.0/24'],
    ['203.0.113.7/32', '203.0.113.7'],
    ['2001:db8::1/128', '2001:db8::1'],
    ['2001:db8:abcd:12::1/48', '2001:db8:abcd::/48'],
    ['::ffff:198.51.100.9', '198.51.100.9'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['100.10.0.1', '100.10.0.1'],
  ];
  for (const [input, expected] of canonical) {
    it(`canonicalises ${input} to ${expected}`, () => {
      const result = parseAddress(input);
      expect(result.ok && result.address.text).to.equal(expected);
    });
  }

  const invalid = [
    '', 'not-an-ip', '999.1.1.1', '1.2.3', '01.2.3.4', '0x7f.0.0.1', '1.2.3.4 ', ' 1.2.3.4', 'a b', '*',
    'x;touch F', '$(reboot)', '1.2.3.4;rm -rf /', 'fe80::1%eth0', '1.2.3.4/33', '1.2.3.4/-1', '1.2.3.4/', '1.2.3.4/024x',
    '2001:db8::1/129', '::ffff:1.2.3.4/95', '1.2.3.4\n5.6.7.8', '0.0.0.0/0', '10.0.0.0/7', '2001::/15', 'x'.repeat(5000),
    '1.2.3.4.', '.1.2.3.4', '1..2.3', '1.2.3.4.5', '1.2.3.00', '1.2.3.256', '1.2.3.1000', '1.2.3.-1', '1.2.3.+1', '1.2.3.٣',
  ];
  for (const input of invalid) {
    it(`refuses ${JSON.stringify(input.slice(0, 40))}`, () => {
      expect(parseAddress(input).ok).to.equal(false);
    });
  }

  it('reads plain IPv4 addresses (its fast path) exactly as node and ipaddr.js do', () => {
    const texts = ['0.0.0.0', '9.99.199.255', '10.0.0.1', '192.168.1.10', '00.1.2.3', '1.2.3.04', '1.2.3.25x', '1.2.3', '1.2.3.4.', '256.0.0.1'];
    for (let i = 0; i < 2_000; i++) texts.push([0, 0, 0, 0].map(() => String(Math.floor(Math.random() * 300))).join('.'));
    for (const text of texts) {
      const parsed = parseAddress(text);
      expect(parsed.ok, text).to.equal(isIPv4(text));
      if (parsed.ok) expect([parsed.address.text, parsed.address.prefix, parsed.address.network.toString()], text).to.deep.equal([ipaddr.IPv4.parse(text).toString(), 32, text]);
      expect(plainIPv4(text), text).to.equal(parsed.ok ? ipaddr.IPv4.parse(text).toByteArray().reduce((value, byte) => value * 256 + byte, 0) : undefined);
    }
    expect(plainIPv4('255.255.255.255')).to.equal(0xffffffff);
  });

  it('gives the canonical text parseAddress gives, or its reason', () => {
    for (const input of ['203.0.113.7', '2001:DB8::0:1', '10.1.2.3/24', '::ffff:1.2.3.4', ...invalid]) {
      const parsed = parseAddress(input);
      expect(canonicalText(input), input).to.deep.equal(parsed.ok ? parsed.address.text : { reason: parsed.reason });
    }
  });
});

describe('never-ban list', () => {
  const list = new NeverBanList([mustParseAddress('192.0.2.0/24'), mustParseAddress('2001:db8:1::/48')], ['198.51.100.20']);
  const refused: Array<[string, RegExp]> = [
    ['127.0.0.1', /loopback/],
    ['127.8.9.10', /loopback/],
    ['::1', /loopback/],
    ['0.0.0.0', /unspecified/],
    ['198.51.100.20', /own address/],
    ['198.51.100.0/24', /own address/],
    ['192.0.2.77', /ignoreip 192.0.2.0\/24/],
    ['192.0.0.0/16', /ignoreip/],
    ['2001:db8:1:2::5', /ignoreip 2001:db8:1::\/48/],
  ];
  for (const [input, why] of refused) {
    it(`protects ${input}`, () => expect(list.reason(mustParseAddress(input))).to.match(why));
  }
  for (const input of ['203.0.113.7', '198.51.100.21', '2001:db8:2::1', '192.0.3.0/24']) {
    it(`lets ${input} be banned`, () => expect(list.reason(mustParseAddress(input))).to.equal(null));
  }
});

describe('never-ban list: special ranges and the minimum prefix', () => {
  const list = new NeverBanList([], [], { 4: 16, 6: 32 });
  const refused: Array<[string, RegExp]> = [
    ['10.0.0.0/8', /wider than \/16 \(min_prefix_ipv4\)/],
    ['2a00::/16', /wider than \/32 \(min_prefix_ipv6\)/],
    ['64:ff9b::/96', /NAT64/],
    ['64:ff9b::cb00:7107', /NAT64/],
    ['224.0.0.0/8', /wider than/],
    ['224.0.0.0/16', /multicast/],
    ['239.1.2.3', /multicast/],
    ['ff02::1', /multicast/],
    ['255.255.255.255', /broadcast/],
    ['0.1.2.3', /unspecified/],
    ['::', /unspecified/],
  ];
  for (const [input, why] of refused) {
    it(`refuses ${input}`, () => expect(list.reason(mustParseAddress(input))).to.match(why));
  }
  for (const input of ['10.1.0.0/16', '2a00:1450::/32', '203.0.113.7', '2001:db8::1', '223.255.255.255']) {
    it(`lets ${input} be banned`, () => expect(list.reason(mustParseAddress(input))).to.equal(null));
  }
  it('a wider minimum prefix is a setting', () => {
    const wide = new NeverBanList([], [], { 4: 8, 6: 16 });
    expect(wide.reason(mustParseAddress('10.0.0.0/8'))).to.equal(null);
    expect(wide.reason(mustParseAddress('2a00::/16'))).to.equal(null);
  });
  it('protects what protect() names until it is replaced', () => {
    const fleet = new NeverBanList([], [], { 4: 16, 6: 32 });
    fleet.protect('peer.example', [mustParseAddress('198.51.100.7')], 'sync_servers peer.example');
    expect(fleet.reason(mustParseAddress('198.51.100.0/24'))).to.equal('sync_servers peer.example');
    fleet.protect('peer.example', [mustParseAddress('198.51.100.8')], 'sync_servers peer.example');
    expect(fleet.reason(mustParseAddress('198.51.100.7'))).to.equal(null);
    expect(fleet.reasonIPv4(plainIPv4('198.51.100.7')!)).to.equal(null);
    expect(fleet.reasonIPv4(plainIPv4('198.51.100.8')!)).to.equal('sync_servers peer.example');
  });

  it('answers for an IPv4 host given as its value as for the parsed address, the same range first', () => {
    const ranges = ['192.0.2.0/24', '192.0.2.7', '198.51.100.0/25', '198.51.100.9', '10.0.0.0/8', '203.0.113.255'];
    const list = new NeverBanList(ranges.slice(0, 3).map((range) => mustParseAddress(range, { anyPrefix: true })), ['198.51.100.9', '2001:db8::9']);
    list.protect('hub.example', [mustParseAddress('192.0.2.7'), mustParseAddress('203.0.113.255'), mustParseAddress('10.9.9.9')], 'broker_url hub.example');
    list.protect('fw', [mustParseAddress('10.0.0.0/8', { anyPrefix: true })], 'opn_fw_ip fw');
    const probes = ['0.0.0.0', '0.255.255.255', '1.0.0.0', '126.255.255.255', '127.0.0.1', '169.254.1.1', '224.0.0.1', '239.255.255.255', '240.0.0.0', '255.255.255.255', '10.9.9.9', '10.9.9.10', '11.0.0.0', '9.255.255.255'];
    for (const range of ranges) {
      const { network, prefix } = mustParseAddress(range, { anyPrefix: true });
      const first = network.toByteArray().reduce((value, byte) => value * 256 + byte, 0);
      const last = first + 2 ** (32 - prefix) - 1;
      for (const value of [first - 1, first, first + 1, last - 1, last, last + 1]) probes.push([24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.'));
    }
    for (let i = 0; i < 2_000; i++) probes.push([0, 0, 0, 0].map(() => String(Math.floor(Math.random() * 256))).join('.'));
    const differing = probes.filter((text) => list.reasonIPv4(plainIPv4(text)!) !== list.reason(mustParseAddress(text)));
    expect(differing).to.deep.equal([]);
    expect(list.reasonIPv4(plainIPv4('192.0.2.7')!)).to.equal('broker_url hub.example');
    expect(list.reasonIPv4(plainIPv4('10.9.9.9')!)).to.equal('broker_url hub.example');
    expect(list.reasonIPv4(plainIPv4('10.9.9.10')!)).to.equal('opn_fw_ip fw');
  });
});
