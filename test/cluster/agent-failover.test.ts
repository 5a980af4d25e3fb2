import { expect } from 'chai';
import { createServer, type Server } from 'node:net';
import { AGENT_SERVICE } from '../support/paths.js';
import { freePort } from '../support/ports.js';
import { RunningProcess } from '../support/process.js';
import { SimHost } from '../support/sim-host.js';
import { startStandaloneBroker, type StandaloneBroker } from '../support/standalone-broker.js';
import { waitFor } from '../support/wait.js';

describe('an agent whose hub instances are all down at start', function () {
  this.timeout(60_000);
  let live: StandaloneBroker;
  let slammer: Server;
  let host: SimHost;
  let attempts = 0;

  before(async () => {
    live = await startStandaloneBroker();
    await live.process.stop(); // its port and config stay for start()
    // an instance that hangs up on every connection, counting the agent's attempts
    slammer = createServer((socket) => {
      attempts += 1;
      socket.destroy();
    });
    const port = await freePort();
    await new Promise<void>((resolve) => slammer.listen(port, '127.0.0.1', resolve));
    host = await SimHost.start({
      name: 'fo-a', ip: '127.0.0.2', port: await freePort('127.0.0.2'), fail2ban: false, jails: {},
      brokerUrl: `mqtt://127.0.0.1:${port} ${live.url}`,
    });
  });

  after(async () => {
    await host?.stop();
    slammer?.close();
    await live?.stop();
  });

  it('says once that no instance answers, is unhealthy meanwhile, and subscribes as soon as one returns', async () => {
    host.agent = new RunningProcess(process.execPath, [...AGENT_SERVICE, '--config', host.configPath]);
    await waitFor(() => attempts >= 3, 'three rounds of attempts');
    const agent = host.requireAgent();
    const lines = () => agent.logLines();
    expect(lines().filter((line) => line.msg === 'no hub instance answers; trying each in turn every second')).to.have.length(1);
    expect(lines().filter((line) => line.level === 40 && /cannot reach the broker yet/.test(String(line.msg)))).to.deep.equal([]);
    expect((await host.client(['status'])).code).to.equal(1);

    await live.start();
    await host.waitSubscribed(1);
    await waitFor(async () => (await host.client(['status'])).code === 0, 'the agent to be healthy');
    expect(lines().filter((line) => line.msg === 'subscribed to f2b/+/+').map((line) => line.broker)).to.include(live.url);
  });
});
