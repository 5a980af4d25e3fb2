import { expect } from 'chai';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.js';
import { freePort } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';

describe('hub: mosquitto with its own password file', function () {
  this.timeout(120_000);
  let dir: string;
  let broker: Mosquitto;
  let a: SimHost;
  let b: SimHost;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-mosquitto-auth-'));
    const passwords = join(dir, 'passwords');
    for (const [name, password] of [['host-a', 'password of host a'], ['host-b', 'password of host b']]) {
      const created = await run('mosquitto_passwd', ['-b', ...(name === 'host-a' ? ['-c'] : []), passwords, name!, password!]);
      expect(created.code, created.stderr).to.equal(0);
    }
    await chmod(passwords, 0o600);
    // "user root": as root, mosquitto would otherwise switch to its own user and not read the file.
    broker = await startMosquitto(['allow_anonymous false', `password_file ${passwords}`, 'user root'].join('\n'));
    const port = await freePort('127.0.0.2');
    [a, b] = await Promise.all(
      ['host-a', 'host-b'].map((name, index) =>
        SimHost.start({
          name,
          ip: `127.0.0.${index + 2}`,
          port,
          brokerUrl: broker.url,
          extra: [`mqtt_username = ${name}`, `mqtt_password = password of ${name.replace('-', ' ')}`],
        }),
      ),
    );
    await Promise.all([a.startAgent(), b.startAgent()]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('authenticated hosts sync through it', async () => {
    await a.fail2ban.ban('sshd', '203.0.113.60');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.60'), 'the ban through mosquitto');
  });

  it('the client says clearly when mosquitto refuses its credentials', async () => {
    await b.writeConfig(['mqtt_password = wrong']);
    try {
      const result = await b.client(['-a', 'sshd', 'banip', '203.0.113.61']);
      expect(result.code).to.equal(1);
      expect(result.stderr).to.match(/refused the connection: (not authorised|bad user name or password)/);
    } finally {
      await b.writeConfig();
    }
  });
});
