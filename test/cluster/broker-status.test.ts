import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { MqttClient } from 'mqtt';
import type { StatusReport } from '../../src/control-protocol.js';
import type { PartProblem } from '../../src/status.js';
import { connectedClient } from '../support/mqtt-client.js';
import { BIN } from '../support/paths.js';
import { freePort } from '../support/ports.js';
import { startRedis, type PrivateRedis } from '../support/redis.js';
import { run } from '../support/run.js';
import { logCount, newClusterKey, startStandaloneBroker, type StandaloneBroker } from '../support/standalone-broker.js';
import { measured, measuredBy, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const TOKEN = 'broker-metrics-token-0123456789abcdef';

/** What `syncfail2ban-broker status --json` prints. */
interface StatusJson extends StatusReport {
  healthy: boolean;
  problems: PartProblem[];
}

describe('syncfail2ban-broker status and /metrics: clients, messages in and out, refusals by reason, the Redis link', function () {
  this.timeout(120_000);
  let redis: PrivateRedis;
  let one: StandaloneBroker;
  let two: StandaloneBroker;
  let metricsUrl: string;
  let subscriber: MqttClient;

  before(async () => {
    redis = await startRedis();
    const metricsPort = await freePort();
    metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const cluster = [`cluster_redis_url = ${redis.url}`, `cluster_key = ${newClusterKey()}`];
    [one, two] = await Promise.all([startStandaloneBroker(cluster, [`metrics_port = ${metricsPort}`, `metrics_token = ${TOKEN}`]), startStandaloneBroker(cluster)]);
    for (const broker of [one, two]) await waitFor(() => logCount(broker, /connected to Redis/) === 1, 'the instance to reach Redis');
    subscriber = await connectedClient(two.url);
    await subscriber.subscribeAsync('f2b/#', { qos: 1 });
  });

  after(async () => {
    await subscriber?.endAsync();
    await Promise.all([one?.stop(), two?.stop()]);
    await redis?.stop();
  });

  const statusJson = async (broker: StandaloneBroker) => {
    const result = await broker.statusCommand('--json');
    expect(result.stderr).to.equal('');
    return { code: result.code, report: JSON.parse(result.stdout) as StatusJson };
  };
  const scrape = async () => {
    const response = await fetch(metricsUrl, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(response.status).to.equal(200);
    return response.text();
  };

  it('status counts what crosses the broker and Redis, names what it refused, and exits 0 while healthy', async () => {
    const arrived = new Promise<void>((resolve) => subscriber.once('message', () => resolve()));
    expect((await run('mosquitto_pub', ['-h', one.host, '-p', String(one.port), '-q', '1', '-t', 'f2b/sshd/ban', '-m', '203.0.113.80'])).code).to.equal(0);
    await run('mosquitto_pub', ['-h', one.host, '-p', String(one.port), '-q', '1', '-t', 'elsewhere/x', '-m', '203.0.113.81']);
    await arrived;

    const { code, report } = await statusJson(one);
    expect(code).to.equal(0);
    expect(report).to.include({ program: 'syncfail2ban-broker', healthy: true });
    const broker = part(report.status, 'broker');
    expect(measured(broker, 'messages_in')).to.equal(1);
    expect(measuredBy(broker, 'refused')).to.deep.equal({ 'bad-topic': 1 });
    const cluster = part(report.status, 'cluster');
    expect(measured(cluster, 'up')).to.equal(1);
    expect(measured(cluster, 'sent')).to.equal(1);

    const other = (await statusJson(two)).report.status;
    expect(measured(part(other, 'broker'), 'clients')).to.equal(1);
    expect(measured(part(other, 'broker'), 'messages_out')).to.equal(1);
    expect(measured(part(other, 'cluster'), 'received')).to.equal(1);

    const text = await one.statusCommand();
    expect(text.code).to.equal(0);
    expect(text.stdout).to.match(/^syncfail2ban-broker \d+\.\d+\.\d+, pid \d+, up /);
    expect(text.stdout).to.match(/^cluster\n {2}redis: redis:\/\/127\.0\.0\.1:\d+\/?\n {2}state: up\n/m);
    expect(text.stdout).to.match(/^ {2}refused: bad-topic 1$/m);
    expect(text.stdout).to.match(/\nhealthy\n$/);
  });

  it('/metrics serves the same numbers, with metrics_token', async () => {
    expect((await fetch(metricsUrl)).status).to.equal(401);
    const body = await scrape();
    expect(body).to.match(/^syncfail2ban_up\{program="syncfail2ban-broker",/m);
    expect(body).to.match(/^syncfail2ban_broker_messages_in_total 1$/m);
    expect(body).to.match(/^syncfail2ban_broker_refused_total\{reason="bad-topic"\} 1$/m);
    expect(body).to.match(/^syncfail2ban_cluster_up 1$/m);
    expect(body).to.match(/^syncfail2ban_healthy 1$/m);
  });

  it('with Redis down, status exits 1 naming the Redis link and the fix, and /metrics says so; healthy again once Redis is back', async () => {
    await redis.stopProcess();
    try {
      await waitFor(async () => measured(part(await one.status(), 'cluster'), 'up') === 0, 'the instance to see Redis gone');
      const { code, report } = await statusJson(one);
      expect(code).to.equal(1);
      expect(report.problems).to.have.length(1);
      expect(report.problems[0]).to.include({ part: 'cluster' });
      expect(report.problems[0]!.what).to.match(/^Redis at redis:\/\/127\.0\.0\.1:\d+\/? is unreachable.*: events do not cross to the other instances$/);
      expect(report.problems[0]!.fix).to.match(/start Redis, or correct cluster_redis_url/);
      const body = await scrape();
      expect(body).to.match(/^syncfail2ban_cluster_up 0$/m);
      expect(body).to.match(/^syncfail2ban_healthy 0$/m);
    } finally {
      await redis.startProcess();
    }
    await waitFor(async () => (await statusJson(one)).code === 0, 'the instance healthy again');
  });

  it('the control socket and the metrics port are its own: an agent with the default ones may run on the same host', async () => {
    const { report } = await statusJson(one);
    expect(part(report.status, 'control').details.socket).to.equal(one.controlSocket);
    expect(part(report.status, 'metrics').details.url).to.equal(metricsUrl);
  });

  it('a clustered instance without cluster_key does not start: exit 78, naming the key and the fix', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sf2b-nokey-'));
    try {
      const config = join(dir, 'config.cfg');
      await writeFile(config, `mq_ip = 127.0.0.1\nmq_port = ${await freePort()}\ncluster_redis_url = ${redis.url}\n`, { mode: 0o600 });
      const result = await run(process.execPath, [BIN.broker, '--config', config]);
      expect(result.code).to.equal(78);
      expect(result.stderr).to.equal(`syncfail2ban-broker: ${config}: cluster_key: is required with cluster_redis_url (instances sign what they put into Redis with it); fix: set cluster_key to the same long random string on every instance of the hub, e.g. the output of: openssl rand -hex 32\n`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
