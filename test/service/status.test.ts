import { expect } from 'chai';
import { stat } from 'node:fs/promises';
import { freePort } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';

interface StatusJson {
  healthy: boolean;
  problems: string[];
  pid: number;
  status: {
    nodeId: string;
    topology: string;
    links: Array<{ url: string; state: string }>;
    intake: { received: number; accepted: number; peersSeen: Record<string, string> };
    refused: Record<string, number>;
    sinks: Record<string, { applied: number; backlog: number; lastError: string | null }>;
    fleet: { holdings: Record<string, Record<string, number>> };
    syncJails: { ok: boolean } | null;
  };
}

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

  it('status prints node id, topology, brokers, events and sinks, and exits 0 when all is well', async () => {
    const result = await host.client(['status']);
    expect(result.code, result.stdout + result.stderr).to.equal(0);
    expect(result.stdout).to.match(/^node id: +ops$/m);
    expect(result.stdout).to.match(/^topology: +mesh \(embedded broker on mqtt:\/\/127\.0\.0\.7:\d+\)$/m);
    expect(result.stdout).to.match(/^ {2}mqtt:\/\/127\.0\.0\.7:\d+ +connected for /m);
    expect(result.stdout).to.match(/^events: +\d+ received, \d+ accepted, \d+ own skipped, \d+ refused$/m);
    expect(result.stdout).to.match(/^ {2}fail2ban +applied \d+ of \d+, backlog 0/m);
    expect(result.stdout).to.match(/^holdings: +\d+ in .*state, \d+ unban\(s\) from origins holding nothing$/m);
    expect(result.stdout).to.match(/^sync jails: reconciled .* ago, \d+ added, \d+ removed/m);
    expect(result.stdout).to.match(/^healthy$/m);
  });

  it('the control socket is a root-only socket (mode 0600)', async () => {
    const info = await stat(host.controlSocket);
    expect(info.isSocket()).to.equal(true);
    expect(info.mode & 0o777).to.equal(0o600);
  });

  it('status --json shows received, applied and refused events, and the peers seen', async () => {
    const before = (await statusJson(host)).report.status;
    await publish(host, 'f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.50', origin: 'peer-x' }));
    await publish(host, 'f2b/sshd/ban', 'not-an-ip');
    await waitFor(async () => (await host.banned('sshd-sync')).includes('203.0.113.50'), '203.0.113.50 in sshd-sync');

    const { code, report } = await waitFor(async () => {
      const answer = await statusJson(host);
      return answer.report.status.refused['bad-address'] === (before.refused['bad-address'] ?? 0) + 1 ? answer : undefined;
    }, 'the refusal counted');
    expect(code).to.equal(0);
    expect(report.healthy).to.equal(true);
    expect(report.status.nodeId).to.equal('ops');
    expect(report.status.topology).to.equal('mesh');
    expect(report.status.intake.received).to.equal(before.intake.received + 2);
    expect(report.status.intake.accepted).to.equal(before.intake.accepted + 1);
    expect(report.status.intake.peersSeen).to.have.property('peer-x');
    expect(report.status.sinks.fail2ban!.applied).to.equal(before.sinks.fail2ban!.applied + 1);
    expect(report.status.fleet.holdings.sshd).to.deep.include({ 'peer-x': 1 });
    expect(report.status.syncJails).to.deep.include({ ok: true });
  });

  it('the metrics endpoint serves the same counters, and they move after an event', async () => {
    const scrape = async () => {
      const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(response.status).to.equal(200);
      return response.text();
    };
    const before = await scrape();
    expect(sample(before, 'syncfail2ban_healthy')).to.equal(1);
    expect(before).to.match(/^syncfail2ban_broker_connected\{broker="mqtt:\/\/127\.0\.0\.7:\d+"\} 1$/m);

    await publish(host, 'f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.51', origin: 'peer-y' }));
    await waitFor(async () => (await host.banned('sshd-sync')).includes('203.0.113.51'), '203.0.113.51 in sshd-sync');
    const after = await waitFor(async () => {
      const text = await scrape();
      return sample(text, 'syncfail2ban_sink_changes_applied_total{sink="fail2ban"}') > sample(before, 'syncfail2ban_sink_changes_applied_total{sink="fail2ban"}') ? text : undefined;
    }, 'the applied counter to move');
    expect(sample(after, 'syncfail2ban_events_received_total')).to.equal(sample(before, 'syncfail2ban_events_received_total') + 1);
    expect(sample(after, 'syncfail2ban_events_accepted_total')).to.equal(sample(before, 'syncfail2ban_events_accepted_total') + 1);
    expect(after).to.match(/^syncfail2ban_peer_last_event_timestamp_seconds\{origin="peer-y"\} \d/m);
    expect(sample(after, 'syncfail2ban_holdings{jail="sshd",origin="peer-y"}')).to.equal(1);
    expect(sample(after, 'syncfail2ban_sync_jail_reconcile_ok')).to.equal(1);
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
      expect(failing.stdout).to.match(/^ {2}- sink fail2ban is failing with \d+ change\(s\) waiting: cannot connect to fail2ban/m);
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
      expect(report.problems[0]).to.match(new RegExp(`^broker mqtt://${deadPeer.replace(/\./g, '\\.')} is (connecting|down) since `));
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
