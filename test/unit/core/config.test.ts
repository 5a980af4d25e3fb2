import { expect } from 'chai';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig } from '../../../src/config.js';
import { ROOT } from '../../support/paths.js';

describe('config', () => {
  it("reads the README's minimal config (keys at the top)", () => {
    const config = parseConfig(
      'f2b_sync = true\nmq_port = 18862\nmq_ip = 192.0.2.10\nsync_servers = 192.0.2.11 192.0.2.12:19000\nconnection_timeout = 10\n\n[jails]\nsshd = sshd-sync\n',
      'minimal.cfg',
    );
    expect(config.mq).to.deep.equal({ host: '192.0.2.10', port: 18862 });
    expect(config.syncServers).to.deep.equal([
      { host: '192.0.2.11', port: 18862 },
      { host: '192.0.2.12', port: 19000 },
    ]);
    expect([...config.jails]).to.deep.equal([['sshd', 'sshd-sync']]);
    expect(config.unknownKeys).to.deep.equal([]);
  });

  it('the shipped config, which npm start runs, serves this host only (loopback) and reaches no other', () => {
    const config = loadConfig(join(ROOT, 'etc/config.cfg'));
    expect(config.mq.host).to.equal('127.0.0.1');
    expect(config.syncServers).to.deep.equal([]);
    expect(config.brokerUrls).to.deep.equal([]);
    expect(config.metrics).to.equal(undefined);
    expect(config.unknownKeys).to.deep.equal([]);
  });

  it("reads the original's shipped file: every key of it ([default] section, blank values, OPNsense keys, log rotation)", () => {
    const config = parseConfig(
      [
        '[default]', 'log_debug = false', 'log_max_size = 500000', 'log_backup_count = 1', 'f2b_sync = true', 'mq_port = 18862', 'mq_ip =', 'sync_servers =', 'connection_timeout = 10',
        'opn_fw_sync = false', 'opn_fw_ip = 192.169.0.1 192.0.2.1:8443', 'opn_verify = false',
        '[jails]', 'postfix-host-ban = postfix-host-ban-sync',
        '[opn_aliases]', 'postfix-host-ban = f2b_port_scanners',
        '[opn_keys]', '192.169.0.1_key = jKeHq/+x', '192.169.0.1_secret = upb87==', '192.0.2.1:8443_key = k2', '192.0.2.1:8443_secret = s2',
      ].join('\n'),
      'shipped.cfg',
    );
    expect(config.mq.port).to.equal(18862);
    expect(config.mq.host).to.match(/^\d+\.\d+\.\d+\.\d+$/);
    expect(config.syncServers).to.deep.equal([]);
    expect(config.opnsense.verifyTls).to.equal(false);
    expect(config.opnsense.firewalls).to.deep.equal([
      { name: '192.169.0.1', baseUrl: 'https://192.169.0.1', key: 'jKeHq/+x', secret: 'upb87==' },
      { name: '192.0.2.1:8443', baseUrl: 'https://192.0.2.1:8443', key: 'k2', secret: 's2' },
    ]);
    expect([...config.opnsense.aliases]).to.deep.equal([['postfix-host-ban', 'f2b_port_scanners']]);
    expect(config.unknownKeys).to.deep.equal([]);
    expect(config.warnings).to.deep.equal([]);
    expect(config.notices).to.have.length(1);
    expect(config.notices[0]).to.match(/^log_max_size and log_backup_count .* not used: the logs go to the journal, which journald rotates/);
  });

  it("refuses an original log rotation key that is not a whole number, naming it", () => {
    expect(() => parseConfig('log_max_size = 5MB\n', 'rotation.cfg')).to.throw(ConfigError, /rotation\.cfg: log_max_size: "5MB" is not a whole number/);
  });

  it('takes the new keys', () => {
    const config = parseConfig('node_id = web-1\nbroker_url = mqtts://hub.example.net:8883\nfail2ban_socket = /run/f2b.sock\nignoreip = 192.0.2.0/24 2001:db8::/32\n', 'new.cfg');
    expect(config.nodeId).to.equal('web-1');
    expect(config.brokerUrls).to.deep.equal(['mqtts://hub.example.net:8883']);
    expect(config.fail2banSocket).to.equal('/run/f2b.sock');
    expect(config.ignoreIp.map((address) => address.text)).to.deep.equal(['192.0.2.0/24', '2001:db8::/32']);
  });

  it('keeps a path prefix of an opn_fw_ip URL (a firewall GUI behind a reverse proxy)', () => {
    const config = parseConfig(
      ['opn_fw_sync = true', 'opn_fw_ip = https://proxy.example.net/fw1/ http://192.0.2.1:8080 https://fw.example.net', '[opn_keys]',
        'https://proxy.example.net/fw1/_key = k1', 'https://proxy.example.net/fw1/_secret = s1',
        'http://192.0.2.1:8080_key = k2', 'http://192.0.2.1:8080_secret = s2', 'https://fw.example.net_key = k3', 'https://fw.example.net_secret = s3'].join('\n'),
      'prefix.cfg',
    );
    expect(config.opnsense.firewalls.map((firewall) => firewall.baseUrl)).to.deep.equal(['https://proxy.example.net/fw1', 'http://192.0.2.1:8080', 'https://fw.example.net']);
    expect(config.opnsense.firewalls[0]).to.include({ name: 'https://proxy.example.net/fw1/', key: 'k1', secret: 's1' });
  });

  it('lists unknown keys and sections, with the closest known name when one is close', () => {
    const text = 'mq_prot = 1\nsync_server = 192.0.2.2\nfrobnicate = 1\n[jail]\nsshd = sshd-sync\n[extra]\na = b\n[opn_keys]\n192.0.2.1_kee = k\n';
    expect(parseConfig(text, 'typo.cfg').unknownKeys).to.deep.equal([
      { name: 'mq_prot', suggestion: 'mq_port' },
      { name: 'sync_server', suggestion: 'sync_servers' },
      { name: 'frobnicate' },
      { name: '[opn_keys] 192.0.2.1_kee' },
      { name: '[jail]', suggestion: '[jails]' },
      { name: '[extra]' },
    ]);
  });

  const bad: Array<[string, RegExp]> = [
    ['mq_port = 99999', /bad\.cfg: mq_port: "99999" is not a whole number from 1 to 65535; fix: /],
    ['mq_port = abc', /mq_port.*fix/],
    ['mq_ip = not-an-ip', /mq_ip.*not an IP address.*fix/],
    ['sync_servers = 192.0.2.1:0', /sync_servers.*fix/],
    ['sync_servers = 1.2.3.4:5:6', /sync_servers.*fix/],
    ['sync_servers = bad$host', /sync_servers.*fix/],
    ['connection_timeout = -1', /connection_timeout.*fix/],
    ['f2b_sync = maybe', /f2b_sync.*not a boolean.*fix: set f2b_sync to true or false/],
    ['broker_url = http://x', /broker_url.*scheme http: is not supported/],
    ['broker_url = mqtt://user:pw@x', /broker_url.*credentials/],
    ['node_id = a b', /node_id.*fix/],
    ['ignoreip = 1.2.3.4 nope', /ignoreip.*"nope".*fix/],
    ['[jails]\nsshd = sshd sync', /\[jails\] sshd.*fix/],
    ['[jails]\nss$hd = x', /\[jails\] ss\$hd.*fix/],
    ['opn_fw_sync = true', /opn_fw_ip.*no firewall/],
    ['opn_fw_sync = true\nopn_fw_ip = 192.0.2.1', /\[opn_keys\] 192\.0\.2\.1_key.*fix/],
    ['opn_fw_ip = https://admin:pw@fw.example.net', /opn_fw_ip: the entry for https:\/\/fw\.example\.net contains credentials; fix: remove "user:password@"/],
    ['opn_fw_ip = https://fw.example.net/gui?x=1', /opn_fw_ip: https:\/\/fw\.example\.net\/gui has a query or fragment; fix: /],
    ['opn_fw_ip = https://fw.example.net/fw1/api/', /opn_fw_ip: .* ends in \/api; fix: write the base URL without \/api \(https:\/\/fw\.example\.net\/fw1\)/],
  ];
  for (const [text, message] of bad) {
    it(`stops with one clear message on ${JSON.stringify(text)}`, () => {
      expect(() => parseConfig(text, 'bad.cfg')).to.throw(ConfigError, message);
    });
  }

  it('names the file when it is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sf2b-config-'));
    expect(() => loadConfig(join(dir, 'absent.cfg'))).to.throw(ConfigError, /absent\.cfg: no such config file; fix:/);
    await writeFile(join(dir, 'ok.cfg'), '[jails]\nsshd = sshd-sync\n');
    expect(loadConfig(join(dir, 'ok.cfg')).jails.get('sshd')).to.equal('sshd-sync');
  });
});
