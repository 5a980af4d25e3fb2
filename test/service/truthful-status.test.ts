import { expect } from 'chai';
import { freePort } from '../support/ports.js';
import { AGENT_SERVICE } from '../support/paths.js';
import { RunningProcess } from '../support/process.js';
import { run } from '../support/run.js';
import { SimHost, type StatusJson } from '../support/sim-host.js';
import { measured, measuredBy, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

async function publish(host: SimHost, topic: string, message: string): Promise<void> {
  const result = await run('mosquitto_pub', ['-h', host.options.ip, '-p', String(host.options.port), '-q', '1', '-t', topic, '-m', message]);
  expect(result.code, result.stderr).to.equal(0);
}

async function statusWhere(host: SimHost, what: string, check: (report: StatusJson) => boolean): Promise<StatusJson> {
  return waitFor(async () => {
    const report = await host.status();
    return check(report) ? report : undefined;
  }, what);
}

describe('status tells the truth: refused changes, missing jails, parts that cannot start, dry run', function () {
  this.timeout(120_000);
  const hosts: SimHost[] = [];

  async function host(name: string, ip: string, extra: string[] = []): Promise<SimHost> {
    const started = await SimHost.start({ name, ip, port: await freePort(ip), extra });
    hosts.push(started);
    return started;
  }

  afterEach(async () => {
    await Promise.all(hosts.splice(0).map((started) => started.stop()));
  });

  it('a missing sync jail is a problem with its fix, its refused changes count as dropped, and it heals once the jail exists', async () => {
    const h = await host('nojail', '127.0.0.21');
    await h.fail2ban.cli('stop', 'web-sync'); // as if jail.local lacked it
    await h.startAgent();

    const missing = await statusWhere(h, 'the missing jail in status', (report) => report.problems.some((problem) => /web-sync/.test(problem.what)));
    expect(missing.healthy).to.equal(false);
    const problem = missing.problems.find((candidate) => candidate.what === 'sync jail web-sync does not exist in fail2ban: bans from other hosts cannot be applied');
    expect(problem?.part).to.equal('sink fail2ban');
    expect(problem?.fix).to.match(/^define \[web-sync\] in fail2ban's jail\.local \(see \/\S+\/etc\/fail2ban\/jail\.local\), run "fail2ban-client reload", then re-send with syncfail2ban-client -f <jail> on the other hosts$/);
    expect((await h.client(['status'])).code).to.equal(1);

    await publish(h, 'f2b/web/ban', JSON.stringify({ ip: '203.0.113.60', origin: 'peer' }));
    await publish(h, 'f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.61', origin: 'peer' }));
    const refused = await statusWhere(h, 'the refused ban counted', (report) => measured(part(report.status, 'sink', 'fail2ban'), 'changes_applied') === 1 && measuredBy(part(report.status, 'sink', 'fail2ban'), 'changes_dropped').refused === 1);
    const sink = part(refused.status, 'sink', 'fail2ban');
    expect(measuredBy(sink, 'changes_refused')).to.deep.equal({ 'web-sync': 1 });
    expect(refused.healthy).to.equal(false);
    // fail2ban's refusal, or (after the next look) the jail found missing: either names the jail, with the same fix.
    const jailProblem = refused.problems.find((candidate) => /^(fail2ban refuses changes to sync jail web-sync: |sync jail web-sync does not exist in fail2ban)/.test(candidate.what));
    expect(jailProblem?.fix).to.equal(problem?.fix);
    expect(await h.banned('sshd-sync')).to.include('203.0.113.61');
    // The log line of an applied batch names its addresses when there are few.
    await waitFor(() => h.requireAgent().logLines().some((line) => line.msg === 'applied 1 ban(s) (203.0.113.61) and 0 unban(s) to sync jail sshd-sync'), 'the applied line naming the address');

    // A status just before the fix: the next one must not answer from this look.
    expect((await h.status()).healthy).to.equal(false);
    await h.fail2ban.cli('add', 'web-sync', 'polling');
    await h.fail2ban.cli('start', 'web-sync');
    // status takes a fresh look: healthy at once, before any ban passes and before the next periodic check.
    const fresh = await h.status();
    expect(fresh.problems, 'at the first status after the jail exists').to.deep.equal([]);
    expect((await h.client(['status'])).code).to.equal(0);
    await publish(h, 'f2b/web/ban', JSON.stringify({ ip: '203.0.113.62', origin: 'peer' }));
    await waitFor(async () => (await h.banned('web-sync')).includes('203.0.113.62'), 'the ban in the new jail');
    const healed = await statusWhere(h, 'healthy again', (report) => report.healthy);
    expect(healed.problems).to.deep.equal([]);
    expect(measuredBy(part(healed.status, 'sink', 'fail2ban'), 'changes_refused'), 'the count stays').to.deep.equal({ 'web-sync': 1 });
  });

  it('a misspelt sync jail in [jails] (sshd = sshd-snyc): the problem names the jail fail2ban runs', async () => {
    const h = await host('typojail', '127.0.0.28');
    // fail2ban runs sshd-sync; the config names it with a typo.
    h.options.jails = { sshd: 'sshd-snyc', web: 'web-sync' };
    await h.writeConfig();
    await h.startAgent();
    const report = await statusWhere(h, 'the missing jail in status', (current) => current.problems.some((problem) => /sshd-snyc/.test(problem.what)));
    const problem = report.problems.find((candidate) => /sshd-snyc/.test(candidate.what));
    expect(problem?.what).to.equal('sync jail sshd-snyc does not exist in fail2ban: bans from other hosts cannot be applied; did you mean sshd-sync?');
    expect(problem?.fix).to.match(/^correct \[jails\] in the config to "sshd = sshd-sync", then "systemctl reload syncfail2ban"; or define \[sshd-snyc\]/);
  });

  it('a missing sync jail does not hold back reconciling the others, and is reconciled once it exists', async () => {
    const metricsPort = await freePort('127.0.0.1');
    const h = await host('halfjails', '127.0.0.27', [`metrics_port = ${metricsPort}`]);
    const healthyMetric = async () => /^syncfail2ban_healthy 1$/m.test(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    await h.fail2ban.ban('web-sync', '203.0.113.65'); // from before the upgrade: adopted at the first start
    await h.fail2ban.cli('stop', 'sshd-sync'); // the first sync jail [jails] names
    await h.startAgent();

    const half = await statusWhere(h, 'web-sync reconciled', (report) => part(report.status, 'sink', 'fail2ban').details.adopted === 1);
    const sink = part(half.status, 'sink', 'fail2ban');
    expect(sink.details).to.include({ last_reconcile_ok: false });
    expect(measuredBy(sink, 'reconcile_added')).to.deep.equal({ 'web-sync': 0 });
    expect(measuredBy(part(half.status, 'fleet'), 'holdings_by_origin')).to.deep.equal({ '@adopted': 1 });
    expect(half.problems.map((problem) => problem.what)).to.include('sync jail sshd-sync does not exist in fail2ban: bans from other hosts cannot be applied');

    expect(await healthyMetric()).to.equal(false);
    await h.fail2ban.cli('add', 'sshd-sync', 'polling');
    await h.fail2ban.cli('start', 'sshd-sync');
    // Seen on its own, without a status request or a ban (a scrape does not ask for a fresh look): within 30 s.
    await waitFor(healthyMetric, 'the metrics to say healthy once the jail exists', 30_000, 500);
    const healed = await statusWhere(h, 'every sync jail reconciled', (report) => report.healthy);
    expect(part(healed.status, 'sink', 'fail2ban').details).to.include({ last_reconcile_ok: true, adopted: 1 });
    expect(measuredBy(part(healed.status, 'sink', 'fail2ban'), 'reconcile_added')).to.deep.equal({ 'sshd-sync': 0, 'web-sync': 0 });
  });

  it('a metrics port in use and a control socket taken are problems in status, and the agent syncs on', async () => {
    const metricsPort = await freePort('127.0.0.1');
    const first = await host('taken', '127.0.0.22', [`metrics_port = ${metricsPort}`]);
    await first.startAgent();

    const second = await host('late', '127.0.0.23', [`metrics_port = ${metricsPort}`]);
    await second.startAgent();
    const report = await second.status();
    expect(report.healthy).to.equal(false);
    expect(report.problems).to.deep.equal([
      { part: 'metrics', what: `cannot serve metrics on 127.0.0.1:${metricsPort} (EADDRINUSE)`, fix: 'choose a free metrics_port, or 0 to turn metrics off' },
    ]);
    await publish(second, 'f2b/sshd/ban', '203.0.113.63');
    await waitFor(async () => (await second.banned('sshd-sync')).includes('203.0.113.63'), 'the ban applied all the same');

    // A third agent finds the first one's control socket answering: it cannot answer status itself, so its metrics say so.
    const ownMetrics = await freePort('127.0.0.1');
    const third = await host('nosocket', '127.0.0.24');
    await third.writeConfig([`metrics_port = ${ownMetrics}`, `control_socket = ${first.controlSocket}`]);
    third.agent = new RunningProcess(process.execPath, [...AGENT_SERVICE, '--config', third.configPath]);
    const scrape = await waitFor(async () => {
      const text = await (await fetch(`http://127.0.0.1:${ownMetrics}/metrics`)).text();
      return /^syncfail2ban_control_problems 1$/m.test(text) ? text : undefined;
    }, 'the control socket problem in the metrics');
    expect(scrape).to.match(/^syncfail2ban_healthy 0$/m);
    expect((await first.status()).status.nodeId, 'the first agent still answers on its socket').to.equal('taken');
  });

  it('dry run (dry_run = true, or --dry-run) logs each batch it would apply, one info line, and changes nothing', async () => {
    const configured = await host('dry', '127.0.0.25', ['dry_run = true']);
    const flagged = await host('dryflag', '127.0.0.26');
    await configured.startAgent();
    await flagged.startAgent(['--dry-run']);
    for (const h of [configured, flagged]) {
      await publish(h, 'f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.64', origin: 'peer' }));
      const report = await statusWhere(h, 'the batch handled', (answer) => measured(part(answer.status, 'sink', 'fail2ban'), 'changes_applied') === 1);
      expect(report.status.dryRun).to.equal(true);
      expect(report.healthy).to.equal(true);
      const lines = h.requireAgent().logLines().filter((line) => line.dryRun === true && line.sink === 'fail2ban');
      expect(lines.map((line) => [line.level, line.msg])).to.deep.equal([[30, 'dry run: would apply to fail2ban sshd-sync: 1 ban(s) (203.0.113.64), 0 unban(s)']]);
      expect(await h.banned('sshd-sync'), 'nothing applied').to.deep.equal([]);
      expect((await h.client(['status'])).stdout).to.match(/^topology: +mesh \(DRY RUN: nothing is applied\)$/m);
    }
  });
});
