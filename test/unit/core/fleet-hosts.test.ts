import { expect } from 'chai';
import { pino } from 'pino';
import { FleetHostProtection } from '../../../agent/intake/fleet-hosts.js';
import { parseConfig } from '../../../src/config.js';
import { mustParseAddress } from '../../../src/ip.js';
import { NeverBanList } from '../../../src/never-ban.js';

describe('the fleet\'s own hosts are on the never-ban list', () => {
  it('sync_servers (names resolved), the broker_url host and the opn_fw_ip firewalls', async () => {
    const config = parseConfig(
      ['sync_servers = 192.0.2.11 localhost:18863', 'broker_url = mqtt://[2001:db8::5]:1883', 'opn_fw_ip = 198.51.100.1 https://203.0.113.9:8443/fw', 'min_prefix_ipv4 = 24'].join('\n'),
      'test.cfg',
    );
    const list = new NeverBanList([], [], config.minPrefix);
    const protection = new FleetHostProtection(config, list, pino({ level: 'silent' }));
    await protection.start();
    protection.stop();
    const reason = (ip: string) => list.reason(mustParseAddress(ip));
    expect(reason('192.0.2.11')).to.equal('sync_servers 192.0.2.11');
    expect(reason('127.0.0.1')).to.equal('sync_servers localhost (localhost)');
    expect(reason('2001:db8::/64')).to.equal('broker_url host');
    expect(reason('198.51.100.0/24')).to.equal('opn_fw_ip 198.51.100.1');
    expect(reason('203.0.113.9')).to.equal('opn_fw_ip https://203.0.113.9:8443/fw');
    expect(reason('192.0.2.0/23')).to.equal('network wider than /24 (min_prefix_ipv4)');
    expect(reason('192.0.2.12')).to.equal(null);
  });
});
