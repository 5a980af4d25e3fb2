import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { freePort, freePortOn } from '../support/ports.js';
import { run } from '../support/run.js';
import { SimHost } from '../support/sim-host.js';
import { measured, part } from '../support/status.js';
import { waitFor } from '../support/wait.js';

const IPS = ['127.0.0.41', '127.0.0.42'];
/** The open-file limit the flooded agent runs with: its listeners' caps (256 MQTT, 32 metrics, 16 control) and 1,024 kept free fit in it. */
const NOFILE = 1_536;
/** More idle connections than the agent has descriptors: what finding 4 did with 19,990 against 20,000. */
const FLOOD = 2_500;

/**
 * Idle TCP connections to the metrics port that never send a request, kept open as fast as
 * the agent closes them (each is reopened a moment after it closes), until stop().
 */
class IdleFlood {
  private readonly sockets = new Set<Socket>();
  private running = true;

  constructor(
    private readonly host: string,
    private readonly port: number,
    size: number,
  ) {
    for (let i = 0; i < size; i++) this.open();
  }

  stop(): void {
    this.running = false;
    for (const socket of this.sockets) socket.destroy();
  }

  private open(): void {
    const socket = connect({ host: this.host, port: this.port });
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (this.running) setTimeout(() => this.running && this.open(), 500);
    });
  }
}

describe("file descriptors: connections held to the metrics port cannot starve the agent's own work", function () {
  this.timeout(180_000);
  let a: SimHost;
  let b: SimHost;
  let metricsPort: number;

  before(async () => {
    const port = await freePortOn(IPS);
    metricsPort = await freePort(IPS[0]);
    [a, b] = await Promise.all(
      IPS.map((ip, index) =>
        SimHost.start({
          name: `fd-${'ab'[index]}`,
          ip,
          port,
          peers: IPS.filter((peer) => peer !== ip),
          extra: ['mq_max_connections = 256', ...(index === 0 ? [`metrics_host = ${ip}`, `metrics_port = ${metricsPort}`] : [])],
        }),
      ),
    ) as [SimHost, SimHost];
    await Promise.all([a.startAgent(), b.startAgent()]);
    await Promise.all([a.waitSubscribed(2), b.waitSubscribed(2)]);
    // As LimitNOFILE would: this agent may open NOFILE files, sockets included.
    const limited = await run('prlimit', ['--pid', String(a.requireAgent().child.pid), `--nofile=${NOFILE}:${NOFILE}`]);
    expect(limited.code, limited.stderr).to.equal(0);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it("while strangers hold the metrics port, the host's own ban still leaves it, status answers, and the crowd is turned away and logged", async () => {
    const flood = new IdleFlood(IPS[0]!, metricsPort, FLOOD);
    try {
      await waitFor(async () => measured(part(await a.agentStatus(), 'metrics'), 'connections_dropped') > FLOOD / 2, 'the agent to turn most of the crowd away');
      // fail2ban on host a bans; its action publishes through a's own broker, which needs a descriptor
      await a.fail2ban.ban('sshd', '203.0.113.90');
      await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.90'), "host a's own ban on host b during the flood", 30_000);
      const status = await a.status();
      expect(status.problems).to.deep.equal([]);
    } finally {
      flood.stop();
    }
    expect(a.requireAgent().logLines().some((line) => /metrics endpoint: 32 connections are open, so a new one was closed at once/.test(String(line.msg)))).to.equal(true);
  });

  it('an idle connection to the metrics port is closed within seconds, and one that trickles its headers too', async () => {
    const idle = connect({ host: IPS[0], port: metricsPort });
    const trickle = connect({ host: IPS[0], port: metricsPort }, () => trickle.write('GET /metrics HTTP/1.1\r\n'));
    // one header line a second: never idle, never done
    const timer = setInterval(() => trickle.writable && trickle.write('X-Slow: 1\r\n'), 1_000);
    const closed = new Set<Socket>();
    for (const socket of [idle, trickle]) {
      socket.on('error', () => undefined);
      socket.on('close', () => closed.add(socket));
    }
    try {
      // The agent's bounds are 5 s idle and 5 s for the headers; a minute or more before (finding 4).
      await waitFor(() => closed.size === 2, 'the agent to close both connections', 15_000);
    } finally {
      clearInterval(timer);
      idle.destroy();
      trickle.destroy();
    }
  });
});
