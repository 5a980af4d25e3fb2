import { expect } from 'chai';
import { connectedClient } from '../support/mqtt-client.js';
import { freePort } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { measured, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const COUNT = 200;

describe('graceful stop: SIGTERM flushes what the agent accepted into fail2ban, then exits 0', function () {
  this.timeout(120_000);
  let host: SimHost;

  before(async () => {
    const ip = '127.0.0.11';
    host = await SimHost.start({ name: 'stopper', ip, port: await freePort(ip) });
    await host.startAgent();
  });

  after(async () => {
    await host?.stop();
  });

  it(`${COUNT} bans accepted while fail2ban is frozen are all in the sync jail after the agent exited 0`, async () => {
    const agent = host.requireAgent();
    const fail2banPid = host.fail2ban.pid;
    if (fail2banPid === undefined) throw new Error('fail2ban is not running');
    const addresses = Array.from({ length: COUNT }, (_, i) => `198.51.${100 + Math.floor(i / 250)}.${(i % 250) + 1}`);

    // Frozen, fail2ban takes connections but answers nothing: every accepted ban is still
    // waiting in the agent (queued or in flight) when SIGTERM arrives.
    process.kill(fail2banPid, 'SIGSTOP');
    try {
      const publisher = await connectedClient(`mqtt://${host.options.ip}:${host.options.port}`);
      try {
        for (const ip of addresses) await publisher.publishAsync('f2b/sshd/ban', JSON.stringify({ ip, origin: 'peer-z' }), { qos: 1 });
      } finally {
        await publisher.endAsync(true);
      }
      await waitFor(async () => {
        const status = await host.agentStatus();
        expect(measured(part(status, 'sink', 'fail2ban'), 'changes_applied'), 'nothing can be applied while fail2ban is frozen').to.equal(0);
        return measured(part(status, 'events'), 'accepted') === COUNT;
      }, `the agent to accept all ${COUNT} bans`);

      agent.child.kill('SIGTERM');
    } finally {
      process.kill(fail2banPid, 'SIGCONT');
    }

    expect(await agent.exited, agent.output.slice(-2000)).to.equal(0);
    const banned = new Set(await host.banned('sshd-sync'));
    expect(addresses.filter((ip) => !banned.has(ip)), 'accepted bans missing from fail2ban').to.deep.equal([]);
    const messages = agent.logLines().map((line) => line.msg);
    expect(messages).to.include('stopped');
    expect(messages).not.to.include('stopped before every accepted change was applied');
  });
});
