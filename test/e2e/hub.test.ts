import { expect } from 'chai';
import { startMosquitto, type Mosquitto } from '../support/mosquitto.js';
import { freePort } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { startStandaloneBroker } from '../support/standalone-broker.js';
import { waitFor } from '../support/wait.js';

interface Hub {
  url: string;
  host: string;
  port: number;
  restart?(): Promise<void>;
  stop(): Promise<void>;
}

const hubs: Array<[string, () => Promise<Hub>]> = [
  ['a standalone syncfail2ban-broker', () => startStandaloneBroker()],
  ['a real mosquitto', (): Promise<Mosquitto> => startMosquitto()],
];

for (const [label, startHub] of hubs) {
  describe(`hub: two hosts through ${label} (broker_url)`, function () {
    this.timeout(120_000);
    let hub: Hub;
    let a: SimHost;
    let b: SimHost;

    before(async () => {
      hub = await startHub();
      const port = await freePort('127.0.0.2');
      [a, b] = await Promise.all(
        ['127.0.0.2', '127.0.0.3'].map((ip, index) => SimHost.start({ name: `hub-${'ab'[index]}`, ip, port, brokerUrl: hub.url })),
      );
      await Promise.all([a.startAgent(), b.startAgent()]);
    });

    after(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
      await hub?.stop();
    });

    it("a ban and an unban on one host reach the other host's sync jail, and not its own", async () => {
      await a.fail2ban.ban('sshd', '203.0.113.30');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.30'), 'the ban on hub-b');
      await a.fail2ban.unban('sshd', '203.0.113.30');
      await waitFor(async () => !(await b.banned('sshd-sync')).includes('203.0.113.30'), 'the unban on hub-b');
      // a manual bare-address ban is applied by both; once a has it, a has seen its own events too
      await run('mosquitto_pub', ['-h', hub.host, '-p', String(hub.port), '-q', '1', '-t', 'f2b/sshd/ban', '-m', '198.51.100.31']);
      await waitFor(async () => (await a.banned('sshd-sync')).includes('198.51.100.31'), 'the manual ban on hub-a');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('198.51.100.31'), 'the manual ban on hub-b');
      expect(await a.banned('sshd-sync')).not.to.include('203.0.113.30');
    });

    it('no embedded broker is started in hub mode', async () => {
      expect(a.requireAgent().output).not.to.match(/MQTT broker listening/);
    });

    if (label.includes('mosquitto')) {
      it('a message a broker retained is refused when it is replayed to a (re)subscribing agent', async () => {
        const pub = (...args: string[]) => run('mosquitto_pub', ['-h', hub.host, '-p', String(hub.port), '-q', '1', '-t', 'f2b/sshd/ban', ...args]);
        await pub('-r', '-m', '203.0.113.33'); // mosquitto stores it; live subscribers get it once
        await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.33'), 'the live delivery');
        await run('mosquitto_pub', ['-h', hub.host, '-p', String(hub.port), '-q', '1', '-t', 'f2b/sshd/unban', '-m', '203.0.113.33']);
        await waitFor(async () => !(await b.banned('sshd-sync')).includes('203.0.113.33'), 'the unban');
        try {
          await b.requireAgent().stop();
          const agent = await b.startAgent(); // mosquitto replays the retained ban on subscription
          await waitFor(() => agent.logLines().some((line) => line.reason === 'retained'), 'the refusal of the replay');
          await pub('-m', '198.51.100.34');
          await waitFor(async () => (await b.banned('sshd-sync')).includes('198.51.100.34'), 'a live ban after the replay');
          expect(await b.banned('sshd-sync')).not.to.include('203.0.113.33');
        } finally {
          await pub('-r', '-n'); // clear the retained message
        }
      });
    }

    if (label.includes('standalone')) {
      it('agents reconnect on their own when the hub goes away and comes back', async () => {
        await hub.restart!();
        await waitFor(
          () => [a, b].every((host) => host.requireAgent().logLines().filter((line) => line.msg === 'subscribed to f2b/+/+').length >= 2),
          'both agents to re-subscribe',
        );
        await a.fail2ban.ban('sshd', '203.0.113.32');
        await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.32'), 'a ban after the hub restart');
      });
    }
  });
}
