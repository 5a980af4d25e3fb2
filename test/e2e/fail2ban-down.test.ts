import { expect } from 'chai';
import { freePort } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { measured, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

describe('fail2ban not running', function () {
  this.timeout(120_000);
  let host: SimHost;

  before(async () => {
    host = await SimHost.start({ name: 'no-f2b', ip: '127.0.0.7', port: await freePort('127.0.0.7') });
    await host.fail2ban.stopProcess();
  });

  after(async () => {
    await host?.stop();
  });

  it('the agent says so, keeps running, and applies what arrived once fail2ban is back', async () => {
    const agent = await host.startAgent();
    const sink = async () => part(await host.agentStatus(), 'sink', 'fail2ban');
    const down = await waitFor(async () => (await sink()).problems.find((problem) => /^fail2ban is not reachable: .*Is fail2ban running\?/.test(problem.what)), 'the problem in status');
    expect(down.fix).to.match(/^start fail2ban/);

    const published = await run('mosquitto_pub', ['-h', '127.0.0.7', '-p', String(host.options.port), '-q', '1', '-t', 'f2b/sshd/ban', '-m', '203.0.113.120']);
    expect(published.code, published.stderr).to.equal(0);
    await waitFor(async () => measured(await sink(), 'backlog') === 1, 'the sink to report its backlog');
    expect(agent.alive).to.equal(true);

    await host.fail2ban.startProcess();
    await waitFor(async () => (await host.banned('sshd-sync')).includes('203.0.113.120'), 'the queued ban once fail2ban is back', 60_000);
    await waitFor(async () => (await host.status()).healthy, 'healthy again in status', 30_000);
    expect(measured(await sink(), 'changes_applied')).to.equal(1);
  });
});
