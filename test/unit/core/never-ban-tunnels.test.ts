import { expect } from 'chai';
import { NeverBanList } from '../../../src/never-ban.js';
import { holdsTeredoOf, mustParseAddress, sixToFourOf } from '../../../src/ip.js';

const address = (text: string) => mustParseAddress(text, { anyPrefix: true });

describe('never-ban list: link-local addresses and the IPv6 forms of the fleet\'s IPv4 addresses', () => {
  // A peer (sync_servers 192.0.2.11), this host (198.51.100.20) and ignoreip 203.0.113.0/24.
  const list = new NeverBanList([address('203.0.113.0/24'), address('2001:db8:1::/48')], ['198.51.100.20']);
  list.protect('192.0.2.11', [address('192.0.2.11')], 'sync_servers 192.0.2.11');
  const reason = (text: string) => list.reason(address(text));

  const refused: Array<[string, RegExp]> = [
    // another host's link-local address: a neighbour, or the IPv6 default router
    ['fe80::1:2:3:4', /link-local/],
    ['fe80::1', /link-local/],
    ['febf:ffff::1', /link-local/],
    ['169.254.169.254', /link-local.*metadata/],
    // the peer's 6to4 network 2002:c000:020b::/48, a host in it, and a range that holds it
    ['2002:c000:20b::1', /sync_servers 192\.0\.2\.11, in its 6to4 form 2002:c000:20b::\/48/],
    ['2002:c000:20b:ff00::/56', /sync_servers 192\.0\.2\.11, in its 6to4 form/],
    ['2002:c000::/32', /sync_servers 192\.0\.2\.11, in its 6to4 form/],
    // the peer as a Teredo client: 192.0.2.11 inverted (3fff:fdf4) in the last 32 bits, any server
    ['2001:0:4136:e378:8000:63bf:3fff:fdf4', /sync_servers 192\.0\.2\.11, in its Teredo form/],
    ['2001:0:cb00:7101:0:1234:3fff:fdf4', /sync_servers 192\.0\.2\.11, in its Teredo form/],
    ['2001:0:4136:e378::/64', /in its Teredo form/],
    ['2001:0:4136:e378:8000:63bf:3fff:fd00/120', /sync_servers 192\.0\.2\.11, in its Teredo form/],
    // this host's own address and ignoreip networks, likewise
    ['2002:c633:6414::9', /this host's own address, in its 6to4 form 2002:c633:6414::\/48/],
    ['2001:0:4136:e378:8000:63bf:39cc:9beb', /this host's own address, in its Teredo form/],
    ['2002:cb00:71aa::1', /ignoreip 203\.0\.113\.0\/24, in its 6to4 form 2002:cb00:7100::\/40/],
    ['2001:0:4136:e378:8000:63bf:34ff:8e01', /ignoreip 203\.0\.113\.0\/24, in its Teredo form/],
  ];
  for (const [input, why] of refused) {
    it(`refuses ${input}`, () => expect(reason(input)).to.match(why));
  }

  // Other hosts' 6to4 and Teredo addresses are ordinary attackers.
  for (const input of ['2002:c000:20c::1', '2002:cb00:7200::1', '2001:0:4136:e378:8000:63bf:3fff:fdf5', '2001:0:4136:e378:8000:63bf:3fff:fe00/120', '2001:db8:2::1', '2001:1::1']) {
    it(`lets ${input} be banned`, () => expect(reason(input)).to.equal(null));
  }

  it('computes the tunnel forms from the address: 6to4 keeps the IPv4 prefix, Teredo matches the inverted client bits only', () => {
    expect(sixToFourOf(address('192.0.2.11')).text).to.equal('2002:c000:20b::/48');
    expect(sixToFourOf(address('10.0.0.0/8')).text).to.equal('2002:a00::/24');
    expect(holdsTeredoOf(address('2001:0:1:2:3:4:f5ff:ffff'), address('10.0.0.0/8'))).to.equal(true);
    expect(holdsTeredoOf(address('2001:0:1:2:3:4:f4ff:ffff'), address('10.0.0.0/8'))).to.equal(false);
    expect(holdsTeredoOf(address('2001:db8::/32'), address('192.0.2.11'))).to.equal(false);
    expect(holdsTeredoOf(address('2000::/3'), address('192.0.2.11'))).to.equal(true);
  });
});
