import { expect } from 'chai';
import { clusterOf } from '../../../src/config-hub.js';
import { ConfigError, DEFAULT_BROKER_CONTROL_SOCKET, DEFAULT_CONTROL_SOCKET, parseConfig } from '../../../src/config.js';

const parse = (...lines: string[]) => parseConfig(lines.join('\n'), 'test.cfg');
const KEY = '0123456789abcdef0123456789abcdef';

describe("config: syncfail2ban-broker's own keys ([broker], cluster_key, mq_max_connections)", () => {
  it("[broker] gives the broker its own control socket and metrics, apart from the agent's", () => {
    const config = parse('metrics_port = 9101', 'control_socket = /run/a/control.sock', '[broker]', 'metrics_port = 9102', 'metrics_host = 192.0.2.1', `metrics_token = ${KEY}`);
    expect(config.controlSocket).to.equal('/run/a/control.sock');
    expect(config.metrics).to.deep.equal({ host: '127.0.0.1', port: 9101 });
    expect(config.brokerReporting).to.deep.equal({ controlSocket: DEFAULT_BROKER_CONTROL_SOCKET, metrics: { host: '192.0.2.1', port: 9102, token: KEY } });
    expect(parse('node_id = x').brokerReporting).to.deep.equal({ controlSocket: DEFAULT_BROKER_CONTROL_SOCKET });
    expect(DEFAULT_BROKER_CONTROL_SOCKET).to.not.equal(DEFAULT_CONTROL_SOCKET);
  });

  it('a bad [broker] key stops start-up naming the section, the key and the fix; an unknown one is reported', () => {
    expect(() => parse('[broker]', 'metrics_port = 70000')).to.throw(ConfigError, /^test\.cfg: \[broker\] metrics_port: "70000" is not a whole number from 0 to 65535; fix: /);
    expect(() => parse('[broker]', 'control_socket = run/x.sock')).to.throw(ConfigError, /\[broker\] control_socket: "run\/x\.sock" is not an absolute path; fix: write a path such as \/run\/syncfail2ban-broker\/control\.sock/);
    expect(parse('[broker]', 'metrics_prot = 1').unknownKeys).to.deep.equal([{ name: '[broker] metrics_prot', suggestion: '[broker] metrics_port' }]);
  });

  it('cluster_key: validated wherever it is read, required only by the clustered broker', () => {
    const url = 'cluster_redis_url = redis://127.0.0.1:6379';
    expect(() => parse(url, 'cluster_key = short')).to.throw(ConfigError, /cluster_key: is not 32 to 256 printable characters without spaces; fix: set cluster_key to the same long random string on every instance/);
    expect(() => parse(`cluster_key = ${KEY}`)).to.throw(ConfigError, /cluster_key: is set but cluster_redis_url is not/);
    const keyless = parse(url); // an agent or the client on a hub host reads the file too
    expect(() => clusterOf('test.cfg', keyless.cluster!)).to.throw(ConfigError, /^test\.cfg: cluster_key: is required with cluster_redis_url/);
    expect(clusterOf('test.cfg', parse(url, `cluster_key = ${KEY}`).cluster!).key).to.equal(KEY);
  });

  it('mq_max_connections bounds the broker\'s connections in all (default 10000)', () => {
    expect(parse('node_id = x').broker.limits.connections).to.equal(10_000);
    expect(parse('mq_max_connections = 300').broker.limits.connections).to.equal(300);
    expect(() => parse('mq_max_connections = 0')).to.throw(ConfigError, /mq_max_connections/);
  });
});
