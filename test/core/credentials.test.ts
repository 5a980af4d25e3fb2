import { expect } from 'chai';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('MQTT credentials from the config', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-credentials-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function config(lines: string[], mode = 0o600) {
    const file = join(dir, 'config.cfg');
    await writeFile(file, [...lines, ''].join('\n'));
    await chmod(file, mode);
    return loadConfig(file);
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
});
