import { expect } from 'chai';
import { ConfigError, DEFAULT_CONFIG_FILE, parseConfig } from '../../../src/config.js';

describe('config: the keys for operating the agent (control_socket, metrics_port, metrics_host)', () => {
  it('defaults: the control socket under /run/syncfail2ban, metrics off', () => {
    const config = parseConfig('[jails]\nsshd = sshd-sync\n', DEFAULT_CONFIG_FILE);
    expect(config.controlSocket).to.equal('/run/syncfail2ban/control.sock');
    expect(config.metrics).to.equal(undefined);
    expect(config.unknownKeys).to.deep.equal([]);
  });

  it('metrics_port turns metrics on, on 127.0.0.1 unless metrics_host says otherwise', () => {
    expect(parseConfig('metrics_port = 9464\n', 'm.cfg').metrics).to.deep.equal({ host: '127.0.0.1', port: 9464 });
    expect(parseConfig('metrics_port = 9464\nmetrics_host = ::\n', 'm.cfg').metrics).to.deep.equal({ host: '::', port: 9464 });
    const off = parseConfig('metrics_port = 0\nmetrics_host = 0.0.0.0\n', 'm.cfg');
    expect(off.metrics).to.equal(undefined);
    expect(off.unknownKeys).to.deep.equal([]);
    expect(parseConfig('control_socket = /run/sf2b/ctl.sock\n', 'c.cfg').controlSocket).to.equal('/run/sf2b/ctl.sock');
  });

  it('bad values stop start-up with the file, the key and the fix', () => {
    const cases: Array<[string, string]> = [
      ['metrics_port = 70000', 'bad.cfg: metrics_port: "70000" is not a whole number from 0 to 65535; fix: set metrics_port to such a number (default 0)'],
      ['metrics_port = 9464\nmetrics_host = localhost', 'bad.cfg: metrics_host: "localhost" is not an IP address; fix: give the address to listen on, e.g. 127.0.0.1 (the default) or 0.0.0.0'],
      ['control_socket = run/ctl.sock', 'bad.cfg: control_socket: "run/ctl.sock" is not an absolute path; fix: write a path such as /run/syncfail2ban/control.sock'],
      [`control_socket = /${'x'.repeat(120)}`, 'bad.cfg: control_socket: is longer than a unix socket path may be (107 bytes); fix: choose a shorter path'],
    ];
    for (const [text, message] of cases) {
      expect(() => parseConfig(text, 'bad.cfg'), text).to.throw(ConfigError, message);
    }
  });
});
