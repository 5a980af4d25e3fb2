import { expect } from 'chai';
import { barrier } from '../support/barrier.js';
import { freePortOn } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { measuredBy, part } from '../support/status.js';

/**
 * Finding 3 of the broker review: wide and special networks, and the fleet's own hosts,
 * published to a real embedded broker must never reach a real fail2ban sync jail.
 */
describe('bans that would cut off more than an attacker', function () {
  this.timeout(120_000);
  let a: SimHost;
  let b: SimHost;
  let port: number;

  before(async () => {
    port = await freePortOn(['127.0.0.2', '127.0.0.3']);
    a = await SimHost.start({ name: 'narrow-a', ip: '127.0.0.2', port, peers: ['127.0.0.3'] });
    b = await SimHost.start({ name: 'narrow-b', ip: '127.0.0.3', port, peers: ['127.0.0.2'], extra: ['opn_fw_ip = 192.0.2.1 https://198.51.100.1:8443'] });
    await Promise.all([a.startAgent(), b.startAgent()]);
    await b.waitSubscribed(2);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('refuses networks wider than the minimum prefix, special ranges, sync_servers and the firewalls', async () => {
    const refused = ['10.0.0.0/8', '2a00::/16', '64:ff9b::/96', '224.0.0.0/8', '239.255.255.250', '255.255.255.255', '0.0.0.0/8', 'ff02::1', '192.0.2.1', '198.51.100.0/24'];
    for (const ip of refused) {
      const result = await run('mosquitto_pub', ['-h', '127.0.0.3', '-p', String(port), '-q', '1', '-t', 'f2b/sshd/ban', '-m', ip]);
      expect(result.code, result.stderr).to.equal(0);
    }
    await barrier({ host: '127.0.0.3', port }, [b]);
    expect((await b.banned('sshd-sync')).filter((ip) => refused.includes(ip))).to.deep.equal([]);
    const { status } = await b.status();
    expect(measuredBy(part(status, 'events'), 'refused')['never-ban']).to.equal(refused.length);
    const lines = b.requireAgent().logLines().filter((line) => line.reason === 'never-ban').map((line) => String(line.msg));
    expect(lines[0]).to.match(/ban of 10\.0\.0\.0\/8 \(network wider than \/16 \(min_prefix_ipv4\)\)/);
  });

  it('a ban of a peer is refused, and a /16 inside 10.0.0.0/8 is still banned', async () => {
    for (const ip of ['127.0.0.2', '10.1.0.0/16']) {
      const result = await run('mosquitto_pub', ['-h', '127.0.0.3', '-p', String(port), '-q', '1', '-t', 'f2b/sshd/ban', '-m', ip]);
      expect(result.code, result.stderr).to.equal(0);
    }
    await barrier({ host: '127.0.0.3', port }, [b]);
    const banned = await b.banned('sshd-sync');
    expect(banned).to.include('10.1.0.0/16');
    expect(banned).not.to.include('127.0.0.2');
  });

  it("the client refuses, before publishing, a ban any agent would refuse (exit 1, with the reason); its unbans pass", async () => {
    const before = measuredBy(part((await b.status()).status, 'events'), 'refused')['never-ban'];
    const cases: Array<[string, string]> = [
      ['127.0.0.5', 'loopback'],
      ['10.0.0.0/8', 'network wider than /16 (min_prefix_ipv4)'],
      ['255.255.255.255', 'reserved and broadcast (240.0.0.0/4, 255.255.255.255)'],
      ['127.0.0.3', 'sync_servers 127.0.0.3'],
    ];
    for (const [ip, reason] of cases) {
      const result = await a.client(['-a', 'sshd', 'banip', ip]);
      expect(result.code, ip).to.equal(1);
      expect(result.stderr).to.equal(`syncfail2ban-client: refusing to publish the ban of ${ip} (${reason}): agents never ban it; see docs/security.md, "Never-ban list"\n`);
    }
    const unban = await a.client(['-a', 'sshd', 'unbanip', '10.0.0.0/8']);
    expect(unban.code, unban.stderr).to.equal(0);
    const good = await a.client(['-a', 'sshd', 'banip', '203.0.113.77']);
    expect(good.code, good.stderr).to.equal(0);
    await barrier({ host: '127.0.0.3', port }, [b]);
    expect(await b.banned('sshd-sync')).to.include('203.0.113.77');
    // Nothing refused reached the agents.
    expect(measuredBy(part((await b.status()).status, 'events'), 'refused')['never-ban']).to.equal(before);
  });
});
