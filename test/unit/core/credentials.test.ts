import { expect } from 'chai';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, type ConfigUse, loadConfig } from '../../../src/config.js';

describe('MQTT credentials from the config', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-credentials-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function config(lines: string[], mode = 0o600, use: ConfigUse = 'service') {
    const file = join(dir, 'config.cfg');
    await writeFile(file, [...lines, ''].join('\n'));
    await chmod(file, mode);
    return loadConfig(file, use);
  }

  it('reads mqtt_password_file at load, with node_id as the default user name', async () => {
    const secret = join(dir, 'password');
    await writeFile(secret, 'first line is the password\nignored\n', { mode: 0o600 });
    const loaded = await config(['node_id = web1', `mqtt_password_file = ${secret}`]);
    expect(loaded.warnings).to.deep.equal([]);
    expect(loaded.mqtt).to.deep.include({ username: 'web1', password: 'first line is the password' });
  });

  it('warns when the password file or a config holding a password can be read by others', async () => {
    const secret = join(dir, 'loose');
    await writeFile(secret, 'pw\n');
    await chmod(secret, 0o644);
    expect((await config([`mqtt_password_file = ${secret}`])).warnings).to.deep.equal([`${secret} (mqtt_password_file) can be read by group or others; fix: chmod 600 ${secret}`]);
    expect((await config(['mqtt_password = inline secret'], 0o644)).warnings[0]).to.match(/holds secrets and can be read by every user; fix: chmod 600/);
    expect((await config([`mqtt_password_file = ${join(dir, 'password')}`], 0o644)).warnings, 'no secret in the config itself').to.deep.equal([]);
  });

  it('reads every file the config names at load, and says which key names one that cannot be read', async () => {
    const failure = (lines: string[]) => config(lines).then(() => undefined, (error: unknown) => error);
    expect(await failure([`mqtt_ca_file = ${join(dir, 'absent-ca.pem')}`])).to.be.instanceOf(ConfigError).with.property('message').match(/: mqtt_ca_file: cannot read .*absent-ca\.pem \(ENOENT\); fix: /);
    expect(await failure([`mqtt_password_file = ${join(dir, 'absent')}`])).to.be.instanceOf(ConfigError).with.property('message').match(/: mqtt_password_file: cannot read .*absent \(ENOENT\)/);
    await writeFile(join(dir, 'empty'), '\n');
    expect(await failure([`mqtt_password_file = ${join(dir, 'empty')}`])).to.be.instanceOf(ConfigError).with.property('message').match(/: mqtt_password_file: .*empty is empty; fix: write the password on its first line/);
    expect(await failure([`mq_tls_cert = ${join(dir, 'absent-cert.pem')}`, `mq_tls_key = ${join(dir, 'absent-key.pem')}`])).to.be.instanceOf(ConfigError).with.property('message').match(/: mq_tls_cert: cannot read .*absent-cert\.pem \(ENOENT\)/);
  });

  it('the client (run once per ban) reads only the files it publishes with; the services still read them all', async () => {
    const absent = (name: string) => join(dir, `absent-${name}.pem`);
    const secret = join(dir, 'client-password');
    await writeFile(secret, 'pw\n', { mode: 0o600 });
    const named = [
      `mq_tls_cert = ${absent('broker-cert')}`,
      `mq_tls_key = ${absent('broker-key')}`,
      `mq_tls_client_ca = ${absent('client-ca')}`,
      `cluster_redis_url = rediss://redis.example.net:6380`,
      `cluster_redis_ca_file = ${absent('redis-ca')}`,
      'opn_fw_sync = true',
      'opn_fw_ip = 192.0.2.1',
      `opn_ca_file = ${absent('opn-ca')}`,
      `mqtt_ca_file = ${absent('mqtt-ca')}`,
      `mqtt_cert_file = ${absent('mqtt-cert')}`,
      `mqtt_key_file = ${absent('mqtt-key')}`,
      `mqtt_password_file = ${secret}`,
      '[opn_keys]',
      '192.0.2.1_key = k',
      '192.0.2.1_secret = s',
    ];
    const failure = (lines: string[], use: ConfigUse) => config(lines, 0o600, use).then(() => undefined, (error: unknown) => error);
    const plain = [`broker_url = mqtt://hub.example.net:1883`, ...named];
    expect(await failure(plain, 'service'), 'the agent, the broker and --check').to.be.instanceOf(ConfigError).with.property('message').match(/: mq_tls_cert: cannot read .*absent-broker-cert\.pem/);
    const client = await config(plain, 0o600, 'client');
    expect(client.mqtt, 'the password file is still read').to.deep.include({ password: 'pw' });
    expect(client.mqtt.tls).to.deep.equal({ rejectUnauthorized: true, minVersion: 'TLSv1.2' });
    expect(client.broker.tls).to.equal(undefined);
    expect(await failure([`broker_url = mqtts://hub.example.net:8883`, ...named], 'client'), 'over mqtts:// it reads its TLS files').to.be.instanceOf(ConfigError).with.property('message').match(/: mqtt_ca_file: cannot read .*absent-mqtt-ca\.pem/);
    expect(await failure(named, 'client'), 'a mesh with mq_tls_cert publishes over TLS').to.be.instanceOf(ConfigError).with.property('message').match(/: mqtt_ca_file: cannot read/);
    expect(await failure([`broker_url = mqtt://hub.example.net:1883`, `mq_tls_cert = ${absent('broker-cert')}`], 'client'), 'names still checked in pairs').to.be.instanceOf(ConfigError).with.property('message').match(/mq_tls_key: TLS needs both a certificate and its key/);
  });
});
