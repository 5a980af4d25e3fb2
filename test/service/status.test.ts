import { expect } from 'chai';
import { stat } from 'node:fs/promises';
import { freePort } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost, type StatusJson } from '../support/sim-host.js';
import { measured, measuredBy, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

async function statusJson(host: SimHost): Promise<{ code: number; report: StatusJson }> {
  const result = await host.client(['status', '--json']);
  expect(result.stderr).to.equal('');
  return { code: result.code, report: JSON.parse(result.stdout) as StatusJson };
}

async function publish(host: SimHost, topic: string, message: string): Promise<void> {
  const result = await run('mosquitto_pub', ['-h', host.options.ip, '-p', String(host.options.port), '-q', '1', '-t', topic, '-m', message]);
  expect(result.code, result.stderr).to.equal(0);
}

/** One sample of a Prometheus text exposition, e.g. sample(text, 'x_total{sink="fail2ban"}'). */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  if (!line) throw new Error(`no ${series} in the scrape`);
  return Number(line.slice(series.length + 1));
}

describe('operating a running agent: syncfail2ban-client status and the metrics endpoint', function () {
  this.timeout(120_000);
  let host: SimHost;
  let metricsPort: number;

  before(async () => {
    const ip = '127.0.0.7';
    metricsPort = await freePort('127.0.0.1');
    host = await SimHost.start({ name: 'ops', ip, port: await freePort(ip), extra: [`metrics_port = ${metricsPort}`] });
    await host.startAgent();
  });

  after(async () => {
    await host?.stop();
  });

  it('status prints node id, topology, and every part (broker, links, events, sinks, control, metrics), and exits 0 when all is well', async () => {
    const result = await host.client(['status']);
    expect(result.code, result.stdout + result.stderr).to.equal(0);
    expect(result.stdout).to.match(/^node id: +ops$/m);
    expect(result.stdout).to.match(/^topology: +mesh$/m);
    expect(result.stdout).to.match(/^broker\n {2}url: mqtt:\/\/127\.0\.0\.7:\d+\n {2}clients \d+, messages in \d+, messages out \d+, dropped 0\n {2}refused: none\n {2}dropped by client: none$/m);
    expect(result.stdout).to.match(/^link mqtt:\/\/127\.0\.0\.7:\d+\n {2}state: connected\n {2}since: \S+ \(\d+\w ago\)$/m);
    expect(result.stdout).to.match(/^events\n {2}received \d+, accepted \d+, own skipped \d+$/m);
    expect(result.stdout).to.match(/^sink fail2ban\n(?: {2}.*\n)* {2}changes submitted \d+, changes applied \d+, failures 0, backlog 0$/m);
    expect(result.stdout).to.match(/^control\n {2}socket: \//m);
    expect(result.stdout).to.match(/^metrics\n {2}url: http:\/\/127\.0\.0\.1:\d+\/metrics$/m);
    expect(result.stdout).to.match(/^fleet\n {2}state dir: .*state$/m);
    expect(result.stdout).to.match(/^ {2}last reconcile ok: true$/m);
    expect(result.stdout).to.match(/\nhealthy\n$/);
  });

  it('the control socket is a root-only socket (mode 0600)', async () => {
    const info = await stat(host.controlSocket);
    expect(info.isSocket()).to.equal(true);
    expect(info.mode & 0o777).to.equal(0o600);
  });

  it('status --json shows received, applied and refused events, and the peers seen', async () => {
    const before = (await statusJson(host)).report.status;
    const refusedBefore = measuredBy(part(before, 'events'), 'refused')['bad-address'] ?? 0;
    await publish(host, 'f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.50', origin: 'peer-x' }));
    await publish(host, 'f2b/sshd/ban', 'not-an-ip');
    await waitFor(async () => (await host.banned('sshd-sync')).includes('203.0.113.50'), '203.0.113.50 in sshd-sync');

    const { code, report } = await waitFor(async () => {
      const answer = await statusJson(host);
      const events = part(answer.report.status, 'events');
      const sink = part(answer.report.status, 'sink', 'fail2ban');
      const counted = measuredBy(events, 'refused')['bad-address'] === refusedBefore + 1 && measured(sink, 'changes_applied') > measured(part(before, 'sink', 'fail2ban'), 'changes_applied');
      return counted ? answer : undefined;
    }, 'the refusal and the ban counted');
    expect(code).to.equal(0);
    expect(report.healthy).to.equal(true);
    expect(report.problems).to.deep.equal([]);
    expect(report.status.nodeId).to.equal('ops');
    expect(report.status.topology).to.equal('mesh');
    const events = part(report.status, 'events');
    expect(measured(events, 'received')).to.equal(measured(part(before, 'events'), 'received') + 2);
    expect(measured(events, 'accepted')).to.equal(measured(part(before, 'events'), 'accepted') + 1);
    expect(measuredBy(events, 'peer_last_event')).to.have.property('peer-x');
    expect(measured(part(report.status, 'sink', 'fail2ban'), 'changes_applied')).to.equal(measured(part(before, 'sink', 'fail2ban'), 'changes_applied') + 1);
    expect(measuredBy(part(report.status, 'fleet'), 'holdings_by_origin')).to.deep.include({ 'peer-x': 1 });
    expect(part(report.status, 'sink', 'fail2ban').details).to.deep.include({ last_reconcile_ok: true });
  });

  it("the embedded broker's refusals show in status and metrics next to the intake's", async () => {
    // Refused by the broker, which closes the connection: mosquitto_pub fails.
    await run('mosquitto_pub', ['-h', host.options.ip, '-p', String(host.options.port), '-q', '1', '-t', 'not/ours', '-m', '203.0.113.53']);
    const { report } = await waitFor(async () => {
      const answer = await statusJson(host);
      return (measuredBy(part(answer.report.status, 'broker'), 'refused')['bad-topic'] ?? 0) > 0 ? answer : undefined;
    }, 'the broker to count the refusal');
    expect(report.healthy).to.equal(true);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(sample(text, 'syncfail2ban_broker_refused_total{reason="bad-topic"}')).to.be.at.least(1);
    expect(text).to.match(/^syncfail2ban_events_refused_total\{reason="bad-address"\} \d+$/m);
  });

  it('the metrics endpoint serves the same counters, and they move after an event', async () => {
    const scrape = async () => {
      const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(response.status).to.equal(200);
      return response.text();
    };
    const before = await scrape();
    expect(sample(before, 'syncfail2ban_healthy')).to.equal(1);
    expect(before).to.match(/^syncfail2ban_link_connected\{link="mqtt:\/\/127\.0\.0\.7:\d+"\} 1$/m);
    expect(sample(before, 'syncfail2ban_sink_problems{sink="fail2ban"}')).to.equal(0);
    expect(sample(before, 'syncfail2ban_broker_dropped_total')).to.equal(0);

    await publish(host, 'f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.51', origin: 'peer-y' }));
    await waitFor(async () => (await host.banned('sshd-sync')).includes('203.0.113.51'), '203.0.113.51 in sshd-sync');
    const after = await waitFor(async () => {
      const text = await scrape();
      return sample(text, 'syncfail2ban_sink_changes_applied_total{sink="fail2ban"}') > sample(before, 'syncfail2ban_sink_changes_applied_total{sink="fail2ban"}') ? text : undefined;
    }, 'the applied counter to move');
    expect(sample(after, 'syncfail2ban_events_received_total')).to.equal(sample(before, 'syncfail2ban_events_received_total') + 1);
    expect(sample(after, 'syncfail2ban_events_accepted_total')).to.equal(sample(before, 'syncfail2ban_events_accepted_total') + 1);
    expect(after).to.match(/^syncfail2ban_events_peer_last_event_timestamp_seconds\{origin="peer-y"\} \d/m);
    expect(sample(after, 'syncfail2ban_fleet_holdings_by_origin{origin="peer-y"}')).to.equal(1);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status).to.equal(404);
  });

  it('status exits 1 and names the sink while fail2ban is down, and 0 again once it is back', async () => {
    await host.fail2ban.stopProcess();
    try {
      await publish(host, 'f2b/sshd/ban', '203.0.113.52');
      const failing = await waitFor(async () => {
        const result = await host.client(['status']);
        return result.code === 1 ? result : undefined;
      }, 'status to report the failing sink');
      expect(failing.stdout).to.match(/^UNHEALTHY:$/m);
      expect(failing.stdout).to.match(/^ {2}- sink fail2ban: failing with \d+ change\(s\) waiting: cannot connect to fail2ban/m);
      expect(failing.stdout).to.match(/^ {4}fix: start fail2ban/m);
    } finally {
      await host.fail2ban.startProcess();
    }
    await waitFor(async () => (await host.banned('sshd-sync')).includes('203.0.113.52'), 'the queued ban applied once fail2ban is back', 40_000);
    await waitFor(async () => (await host.client(['status'])).code === 0, 'status healthy again');
  });

  it('status exits 1 and names the broker when a peer cannot be reached', async () => {
    const ip = '127.0.0.8';
    const deadPeer = `127.0.0.9:${await freePort('127.0.0.9')}`;
    const lonely = await SimHost.start({ name: 'lonely', ip, port: await freePort(ip), peers: [deadPeer] });
    try {
      await lonely.startAgent();
      const { code, report } = await statusJson(lonely);
      expect(code).to.equal(1);
      expect(report.healthy).to.equal(false);
      expect(report.problems).to.have.length(1);
      expect(report.problems[0]!.part).to.equal(`link mqtt://${deadPeer}`);
      expect(report.problems[0]!.what).to.match(/^(connecting|down) since /);
      const text = await lonely.client(['status']);
      expect(text.code).to.equal(1);
      expect(text.stdout).to.include(`mqtt://${deadPeer}`);
    } finally {
      await lonely.stop();
    }
  });

  it('status says how to fix it when no agent is running', async () => {
    const ip = '127.0.0.10';
    const idle = await SimHost.start({ name: 'idle', ip, port: await freePort(ip) });
    try {
      const result = await idle.client(['status']);
      expect(result.code).to.equal(1);
      expect(result.stderr.trim()).to.equal(
        `syncfail2ban-client: no control socket at ${idle.controlSocket}: the agent is not running (systemctl status syncfail2ban), or control_socket differs from the agent's config`,
      );
    } finally {
      await idle.stop();
    }
  });
});
