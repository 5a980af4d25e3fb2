import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startBroker, type RunningBroker } from '../../broker/broker.js';
import { DEFAULT_BROKER_LIMITS } from '../../src/config-security.js';
import { startFail2ban, type Fail2banServer } from '../support/fail2ban-server.js';
import { BIN, ROOT } from '../support/paths.js';
import { freePort } from '../support/ports.js';
import { run } from '../support/run.js';
import { waitFor } from '../support/wait.js';

const PROGRAMS = [
  ['syncfail2ban', BIN.agent],
  ['syncfail2ban-client', BIN.client],
  ['syncfail2ban-broker', BIN.broker],
] as const;

describe('every program: --version, --help and the same exit codes', function () {
  this.timeout(60_000);
  let dir: string;
  let version: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-cmdline-'));
    version = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const [program, bin] of PROGRAMS) {
    it(`${program}: --version and -V print the version, --help the options; both exit 0`, async () => {
      for (const flag of ['--version', '-V']) {
        const result = await run(process.execPath, [bin, flag]);
        expect(result.code, flag).to.equal(0);
        expect(result.stdout, flag).to.equal(`${program} ${version}\n`);
      }
      const help = await run(process.execPath, [bin, '--help']);
      expect(help.code).to.equal(0);
      expect(help.stdout).to.match(new RegExp(`^Usage: ${program} `));
      expect(help.stdout).to.include('-V, --version');
    });

    it(`${program}: an unknown option or a stray argument exits 2 with one line naming it`, async () => {
      const unknown = await run(process.execPath, [bin, '--frobnicate']);
      expect(unknown.code).to.equal(2);
      expect(unknown.stderr).to.equal(`${program}: Unknown option '--frobnicate' (see "${program} --help")\n`);
      const missingValue = await run(process.execPath, [bin, '--config']);
      expect(missingValue.code).to.equal(2);
      expect(missingValue.stderr).to.match(new RegExp(`^${program}: Option '-c, --config <value>' argument missing \\(see`));
      const stray = await run(process.execPath, [bin, 'stray', 'more', 'arguments']);
      expect(stray.code).to.equal(2);
      expect(stray.stderr).to.match(new RegExp(`^${program}: .*"(stray|more|arguments)".* \\(see "${program} --help"\\)\n$`));
    });
  }

  it('a misspelt option or command names the closest one ("did you mean"), exit 2', async () => {
    const cases: Array<[string, string[], string]> = [
      [BIN.agent, ['--chek'], `syncfail2ban: Unknown option '--chek': did you mean --check? (see "syncfail2ban --help")\n`],
      [BIN.agent, ['--dry-rn'], `syncfail2ban: Unknown option '--dry-rn': did you mean --dry-run? (see "syncfail2ban --help")\n`],
      [BIN.agent, ['stauts'], `syncfail2ban: unexpected argument "stauts": did you mean status? (see "syncfail2ban --help")\n`],
      [BIN.client, ['stauts'], `syncfail2ban-client: unknown command "stauts": did you mean status? (see "syncfail2ban-client --help")\n`],
      [BIN.client, ['status', '--jsno'], `syncfail2ban-client: Unknown option '--jsno': did you mean --json? (see "syncfail2ban-client --help")\n`],
      [BIN.broker, ['--hash-pasword'], `syncfail2ban-broker: Unknown option '--hash-pasword': did you mean --hash-password? (see "syncfail2ban-broker --help")\n`],
    ];
    for (const [bin, args, stderr] of cases) {
      const result = await run(process.execPath, [bin, ...args]);
      expect(result.code, args.join(' ')).to.equal(2);
      expect(result.stderr).to.equal(stderr);
    }
  });

  it('an option given with a command that does not take it exits 2 naming the command it goes with, instead of being ignored', async () => {
    const cases: Array<[string, string[], string]> = [
      [BIN.agent, ['--fleet'], `syncfail2ban: --fleet goes with status, not the service (see "syncfail2ban --help")\n`],
      [BIN.agent, ['--json'], `syncfail2ban: --json goes with status, not the service (see "syncfail2ban --help")\n`],
      [BIN.agent, ['--bantime', '600'], `syncfail2ban: --bantime goes with -a, not the service (see "syncfail2ban --help")\n`],
      [BIN.client, ['-a', 'sshd', 'banip', '203.0.113.7', '--json'], `syncfail2ban-client: --json goes with status, not -a (see "syncfail2ban-client --help")\n`],
      [BIN.client, ['-f', 'sshd', '--bantime', '600'], `syncfail2ban-client: --bantime goes with -a, not -f (see "syncfail2ban-client --help")\n`],
      [BIN.client, ['status', '--ban-start', '1700000000'], `syncfail2ban-client: --ban-start goes with -a, not status (see "syncfail2ban-client --help")\n`],
    ];
    for (const [bin, args, stderr] of cases) {
      const result = await run(process.execPath, [bin, ...args], 20_000);
      expect(result.code, args.join(' ')).to.equal(2);
      expect(result.stderr, args.join(' ')).to.equal(stderr);
    }
  });

  it('syncfail2ban status asks the agent, as syncfail2ban-client status does', async () => {
    const config = join(dir, 'status.cfg');
    await writeFile(config, `control_socket = ${join(dir, 'nobody-here.sock')}\n`);
    const [agent, client] = await Promise.all([BIN.agent, BIN.client].map((bin) => run(process.execPath, [bin, '--config', config, 'status'])));
    expect(agent.code).to.equal(1);
    expect(agent.stderr).to.equal(client.stderr.replace(/^syncfail2ban-client:/, 'syncfail2ban:'));
    expect(agent.stderr).to.match(/^syncfail2ban: no control socket at .*nobody-here\.sock: the agent is not running/);
  });

  it('a port in use stops the agent and the standalone broker with exit 78 and the fix', async () => {
    const blocker: Server = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port }, resolve));
    try {
      const config = join(dir, 'busy.cfg');
      await writeFile(config, `node_id = busy\nmq_ip = 127.0.0.1\nmq_port = ${port}\ncontrol_socket = ${join(dir, 'busy.sock')}\nstate_dir = ${join(dir, 'busy-state')}\nf2b_sync = false\n`);
      for (const [program, bin] of [PROGRAMS[0], PROGRAMS[2]]) {
        const result = await run(process.execPath, [bin, '--config', config]);
        expect(result.code, program).to.equal(78);
        expect(result.stderr, program).to.include(`${program}: broker cannot listen on 127.0.0.1:${port}: the port is already in use (another syncfail2ban agent or broker?); fix: stop that program, or change mq_port`);
      }
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it('client: bad arguments exit 2, an unreachable broker 1, a bad config 78', async () => {
    const port = await freePort();
    const config = join(dir, 'client.cfg');
    await writeFile(config, `node_id = c1\nmq_ip = 127.0.0.1\nmq_port = ${port}\nconnection_timeout = 2\n`);
    const badIp = await run(process.execPath, [BIN.client, '-c', config, '-a', 'sshd', 'banip', '203.0.113.300']);
    expect(badIp.code).to.equal(2);
    expect(badIp.stderr).to.match(/^syncfail2ban-client: "203\.0\.113\.300" is not a valid address/);
    const nothing = await run(process.execPath, [BIN.client, '-c', config]);
    expect(nothing.code).to.equal(2);
    const down = await run(process.execPath, [BIN.client, '-c', config, '-a', 'sshd', 'banip', '203.0.113.30']);
    expect(down.code).to.equal(1);
    expect(down.stderr).to.include('connection refused');
    await writeFile(join(dir, 'bad.cfg'), 'mq_port = x\n');
    expect((await run(process.execPath, [BIN.client, '-c', join(dir, 'bad.cfg'), '-a', 'sshd', 'banip', '203.0.113.30'])).code).to.equal(78);
  });
});

describe('syncfail2ban -a / -f: the original usage line does what syncfail2ban-client does', function () {
  this.timeout(90_000);
  let dir: string;
  let broker: RunningBroker;
  let fail2ban: Fail2banServer;
  let config: string;
  const received: Array<{ topic: string; payload: string }> = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-seed-usage-'));
    const port = await freePort();
    broker = await startBroker({ host: '127.0.0.1', port, log: pino({ level: 'silent' }), security: { users: new Map(), admins: new Set(), limits: DEFAULT_BROKER_LIMITS }, rateLimit: { perSecond: 1_000, burst: 1_000 } });
    broker.aedes.on('publish', (packet, client) => {
      if (client) received.push({ topic: packet.topic, payload: packet.payload.toString() });
    });
    fail2ban = await startFail2ban({ name: 'seed-usage', jails: [{ name: 'sshd', kind: 'primary' }] });
    config = join(dir, 'config.cfg');
    await writeFile(config, `node_id = seed\nmq_ip = 127.0.0.1\nmq_port = ${port}\nfail2ban_socket = ${fail2ban.socket}\n`);
  });
  after(async () => {
    await broker.close();
    await fail2ban.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('syncfail2ban -a sshd banip IP publishes the same event as the client', async () => {
    for (const bin of [BIN.agent, BIN.client]) {
      const result = await run(process.execPath, [bin, '-c', config, '-a', 'sshd', 'banip', '203.0.113.41']);
      expect(result.code, result.stderr).to.equal(0);
    }
    await waitFor(() => received.length >= 2, 'both events at the broker');
    // The broker may stamp what it adds (the connection an event came through); the rest is the client's.
    const [viaAgent, viaClient] = received.map(({ topic, payload }) => ({ topic, ...(JSON.parse(payload) as { ip: string; origin: string }) }));
    expect(viaAgent).to.deep.equal(viaClient);
    expect(viaAgent).to.include({ topic: 'f2b/sshd/ban', ip: '203.0.113.41', origin: 'seed' });
  });

  it('syncfail2ban -f sshd publishes a snapshot of the jail as the client does', async () => {
    received.length = 0;
    await fail2ban.ban('sshd', '198.51.100.9');
    const viaAgent = await run(process.execPath, [BIN.agent, '-c', config, '-f', 'sshd']);
    expect(viaAgent.code, viaAgent.stderr).to.equal(0);
    expect(viaAgent.stdout).to.equal('published a snapshot of jail sshd: 1 address(es) in 1 part(s), every part acknowledged by the broker\n');
    await waitFor(() => received.length >= 1, 'the snapshot');
    const part = JSON.parse(received[0]!.payload) as { id: string; bantimes: number[] };
    // The ban (the jail's bantime, 1 h) has a little less than its hour left.
    expect(part.bantimes[0]).to.be.within(3_500, 3_600);
    // The broker adds via, the connection the part came through (anonymous: its source address).
    expect(received.map(({ topic, payload }) => [topic, JSON.parse(payload)])).to.deep.equal([
      ['f2b/sshd/snapshot', { origin: 'seed', id: part.id, part: 0, parts: 1, ips: ['198.51.100.9'], bantimes: part.bantimes, via: '127.0.0.1' }],
    ]);
  });
});
