import { expect } from 'chai';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from '../support/paths.js';
import { canConnect } from '../support/mosquitto.js';
import { freePort } from '../support/ports.js';
import { RunningProcess } from '../support/process.js';
import { run } from '../support/run.js';
import { waitFor } from '../support/wait.js';

const noStackTrace = (text: string) => expect(text).not.to.match(/^\s+at /m);

describe('clear errors instead of stack traces', function () {
  this.timeout(60_000);
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-robust-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const [program, bin] of [['syncfail2ban', BIN.agent], ['syncfail2ban-broker', BIN.broker], ['syncfail2ban-client', BIN.client]] as const) {
    it(`${program}: a missing, unreadable or malformed config stops it with one line and exit 78`, async () => {
      const extra = program === 'syncfail2ban-client' ? ['-a', 'sshd', 'banip', '203.0.113.1'] : [];
      const missing = await run(process.execPath, [bin, '--config', join(dir, 'absent.cfg'), ...extra]);
      expect(missing.code).to.equal(78);
      expect(missing.stderr).to.match(new RegExp(`^${program}: .*absent\\.cfg: no such config file; fix: `));
      noStackTrace(missing.stderr);

      const directory = await run(process.execPath, [bin, '--config', dir, ...extra]);
      expect(directory.code).to.equal(78);
      expect(directory.stderr).to.match(/cannot read it \(EISDIR/);

      await writeFile(join(dir, 'bad.cfg'), '[default]\nmq_port = 18862x\n');
      const malformed = await run(process.execPath, [bin, '--config', join(dir, 'bad.cfg'), ...extra]);
      expect(malformed.code).to.equal(78);
      expect(malformed.stderr.trim().split('\n')).to.deep.equal([`${program}: ${join(dir, 'bad.cfg')}: mq_port: "18862x" is not a whole number from 1 to 65535; fix: set mq_port to such a number (default 18862)`]);
    });
  }

  it('syncfail2ban: an unusable opn_ca_file stops it with one line naming the key and the fix, and exit 78', async () => {
    const config = (caFile: string) =>
      ['node_id = ca-check', 'mq_ip = 127.0.0.6', 'f2b_sync = false', `state_dir = ${join(dir, 'state')}`, `control_socket = ${join(dir, 'ca-control.sock')}`,
        'opn_fw_sync = true', 'opn_fw_ip = 192.0.2.1', `opn_ca_file = ${caFile}`, '[opn_aliases]', 'sshd = f2b_sshd', '[opn_keys]', '192.0.2.1_key = k', '192.0.2.1_secret = s', ''].join('\n');
    await writeFile(join(dir, 'ca-missing.cfg'), config(join(dir, 'absent-ca.pem')));
    const missing = await run(process.execPath, [BIN.agent, '--config', join(dir, 'ca-missing.cfg')]);
    expect(missing.code, missing.stderr).to.equal(78);
    expect(missing.stderr.trim().split('\n')).to.deep.equal([
      `syncfail2ban: ${join(dir, 'ca-missing.cfg')}: opn_ca_file: cannot read ${join(dir, 'absent-ca.pem')} (ENOENT); fix: correct the path, or make the file readable by this user`,
    ]);

    await writeFile(join(dir, 'not-a-cert.pem'), 'hello\n');
    await writeFile(join(dir, 'ca-garbage.cfg'), config(join(dir, 'not-a-cert.pem')));
    const garbage = await run(process.execPath, [BIN.agent, '--config', join(dir, 'ca-garbage.cfg')]);
    expect(garbage.code, garbage.stderr).to.equal(78);
    expect(garbage.stderr.trim().split('\n')).to.have.length(1);
    expect(garbage.stderr).to.match(/^syncfail2ban: .*ca-garbage\.cfg: opn_ca_file: .*not-a-cert\.pem holds no PEM certificate .*; fix: point opn_ca_file at/);
  });

  it('a garbled reply on the fail2ban socket is logged clearly and the agent keeps running', async () => {
    const socketPath = join(dir, 'garbled.sock');
    const fake = createServer((socket) => socket.on('data', () => socket.write(Buffer.concat([Buffer.from([0x80, 0x05, 0xff, 0x13, 0x37]), Buffer.from('<F2B_END_COMMAND>')]))));
    await new Promise<void>((resolve) => fake.listen(socketPath, resolve));
    const port = await freePort('127.0.0.6');
    await writeFile(join(dir, 'garbled.cfg'), ['node_id = garbled', 'mq_ip = 127.0.0.6', `mq_port = ${port}`, `fail2ban_socket = ${socketPath}`, `control_socket = ${join(dir, 'control.sock')}`, '[jails]', 'sshd = sshd-sync', ''].join('\n'));
    const agent = new RunningProcess(process.execPath, [BIN.agent, '--config', join(dir, 'garbled.cfg')]);
    try {
      await agent.waitForOutput(/subscribed to f2b/, 'the agent');
      await run('mosquitto_pub', ['-h', '127.0.0.6', '-p', String(port), '-t', 'f2b/sshd/ban', '-m', '203.0.113.2']);
      await waitFor(() => agent.logLines().some((line) => /fail2ban protocol error .*garbled reply/.test(String(line.msg))), 'the protocol error in the log');
      noStackTrace(agent.output);
      expect(agent.logLines().every((line) => line.err === undefined || typeof line.err !== 'object')).to.equal(true);
      expect(agent.alive).to.equal(true);
    } finally {
      await agent.stop();
      fake.close();
    }
  });

  it('the standalone broker runs as an unprivileged user', async function () {
    const asNobody = ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath];
    if (process.getuid?.() !== 0 || (await run('setpriv', [...asNobody, '-e', `require('fs').accessSync(${JSON.stringify(BIN.broker)})`])).code !== 0) {
      this.skip(); // needs root to switch users, and a checkout that user "nobody" can read
    }
    await chmod(dir, 0o755);
    const port = await freePort('127.0.0.1');
    const config = join(dir, 'nobody.cfg');
    await writeFile(config, `mq_ip = 127.0.0.1\nmq_port = ${port}\n`, { mode: 0o644 });
    const broker = new RunningProcess('setpriv', [...asNobody, BIN.broker, '--config', config]);
    try {
      await broker.waitForOutput(/MQTT broker listening/, 'the broker running as nobody');
      expect(await canConnect('127.0.0.1', port)).to.equal(true);
      expect((await run('ps', ['-o', 'user=', '-p', String(broker.child.pid)])).stdout.trim()).to.equal('nobody');
    } finally {
      await broker.stop();
    }
  });
});
