import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_CLOCK_OFFSET_VARIABLE } from '../../agent/fleet/clock.js';
import { requestStatus, type StatusReport } from '../../src/control-protocol.js';
import type { AgentStatus, PartProblem } from '../../src/status.js';
import { startFail2ban, type Fail2banServer, type JailSpec } from './fail2ban-server.js';
import type { NetNamespace } from './netns.js';
import { AGENT_SERVICE, BIN, ROOT } from './paths.js';
import { RunningProcess } from './process.js';
import { run, type RunResult } from './run.js';
import { waitFor } from './wait.js';

/** How long an agent may take to start and subscribe: seconds when quiet, but a machine running the suite's files in parallel has been seen at fifteen. */
const AGENT_START_MS = 45_000;

export interface HostOptions {
  name: string;
  /** Loopback address standing for this host, e.g. 127.0.0.2. */
  ip: string;
  port: number;
  /** Mesh peers as written in sync_servers. */
  peers?: string[];
  /** Hub mode instead of mesh. */
  brokerUrl?: string;
  /** primary jail -> sync jail, as in [jails]. */
  jails?: Record<string, string>;
  /** Extra lines for the [default] section. */
  extra?: string[];
  /** Lines after [jails]: further sections such as [users]. */
  sections?: string[];
  /** false: no fail2ban on this host (f2b_sync = false), e.g. one that only runs the OPNsense bridge. */
  fail2ban?: boolean;
  /**
   * The sync action of the primary jail sshd: the shell action running syncfail2ban-client
   * (the original's lines, the default) or the Python action inside fail2ban-server.
   */
  action?: 'shell' | 'python';
  /** More of the primary jail sshd's settings: a real filter, maxretry, bantime... */
  sshd?: Pick<JailSpec, 'systemFilter' | 'bantime' | 'settings'>;
  /** Options of the Python action, e.g. ['queue_size=100'] (the config's path is always given). */
  pythonActionOptions?: string[];
  /** fail2ban's database: 'file' keeps bans across its restarts (default ':memory:'). */
  db?: 'memory' | 'file';
  /** Runs the host's fail2ban, agent and client inside this network namespace (for nftables and iptables). */
  netns?: NetNamespace;
  /** This host's clock, off from the others' by this many seconds (the agent's test-only clock seam, agent/fleet/clock.ts). */
  clockOffsetS?: number;
  /** A real banaction for the sync jails of [jails] (fail2ban syntax), its action.d files, and a database that survives a restart. */
  syncJailAction?: { action: string; files: Record<string, string>; pythonActions?: Record<string, string> };
}

const DEFAULT_JAILS = { sshd: 'sshd-sync', web: 'web-sync' };

/** What `syncfail2ban-client status --json` prints. */
export interface StatusJson extends StatusReport {
  healthy: boolean;
  problems: PartProblem[];
}

/**
 * One simulated server: a private fail2ban (primary jail `sshd` with the real sync action
 * calling syncfail2ban-client, `web` without actions, and their sync jails) and an agent
 * process configured with the original's keys.
 */
export class SimHost {
  agent: RunningProcess | undefined;

  private constructor(
    readonly options: HostOptions,
    readonly dir: string,
    readonly configPath: string,
    private readonly ownFail2ban: Fail2banServer | undefined,
  ) {}

  get fail2ban(): Fail2banServer {
    if (!this.ownFail2ban) throw new Error(`${this.name} runs no fail2ban`);
    return this.ownFail2ban;
  }

  static async start(options: HostOptions): Promise<SimHost> {
    const dir = await mkdtemp(join(tmpdir(), `sf2b-${options.name}-`));
    const configPath = join(dir, 'config.cfg');
    const clientScript = join(dir, 'syncfail2ban-client');
    // What /etc/syncfail2ban/syncfail2ban-client is on a real install, pointed at this host's config.
    await writeFile(clientScript, `#!/bin/sh\nexec ${process.execPath} ${BIN.client} --config ${configPath} "$@"\n`);
    await chmod(clientScript, 0o755);
    const jails = options.jails ?? DEFAULT_JAILS;
    const python = options.action === 'python';
    let host: SimHost | undefined;
    const fail2ban = options.fail2ban === false ? undefined : await startFail2ban({
      name: options.name,
      jails: [
        { name: 'sshd', kind: 'primary', ...options.sshd },
        { name: 'web', kind: 'sync' },
        ...Object.values(jails).map((name) => ({ name, kind: 'sync' as const, ...(options.syncJailAction ? { action: options.syncJailAction.action } : {}) })),
      ],
      // The shipped action files, unchanged: the test exercises what admins install.
      actionFiles: { 'sync-action': await readFile(join(ROOT, 'etc/fail2ban/action.d/sync-action.conf'), 'utf8'), ...options.syncJailAction?.files },
      pythonActions: { syncfail2ban: await readFile(join(ROOT, 'etc/fail2ban/action.d/syncfail2ban.py'), 'utf8'), ...options.syncJailAction?.pythonActions },
      ...(options.db || options.syncJailAction ? { db: options.db ?? 'file' } : {}),
      primaryAction: python ? `syncfail2ban.py[${[`config=${configPath}`, ...(options.pythonActionOptions ?? [])].join(', ')}]` : `sync-action[client="${clientScript}"]`,
      // The Python action reads the agent's config when its jail starts.
      beforeStart: async (server) => {
        host = new SimHost(options, dir, configPath, server);
        await host.writeConfig();
      },
      ...(options.netns ? { launcher: options.netns.prefix() } : {}),
    });
    if (!host) {
      host = new SimHost(options, dir, configPath, fail2ban);
      await host.writeConfig();
    }
    return host;
  }

  /** The agent's control socket (syncfail2ban-client status), inside this host's temp dir. */
  get controlSocket(): string {
    return join(this.dir, 'control.sock');
  }

  /** Where the agent takes bans from the Python action: action.sock beside the control socket, by default. */
  get actionSocket(): string {
    return join(this.dir, 'action.sock');
  }

  get name(): string {
    return this.options.name;
  }

  async writeConfig(extra: string[] = []): Promise<void> {
    const { options } = this;
    const lines = [
      '[default]',
      `node_id = ${options.name}`,
      'log_debug = false',
      `f2b_sync = ${this.ownFail2ban !== undefined}`,
      `mq_ip = ${options.ip}`,
      `mq_port = ${options.port}`,
      `sync_servers = ${(options.peers ?? []).join(' ')}`,
      'connection_timeout = 5',
      `fail2ban_socket = ${this.ownFail2ban?.socket ?? join(this.dir, 'no-fail2ban.sock')}`,
      `control_socket = ${this.controlSocket}`,
      `state_dir = ${join(this.dir, 'state')}`,
      ...(options.brokerUrl ? [`broker_url = ${options.brokerUrl}`] : []),
      ...(options.extra ?? []),
      ...extra,
      '',
      '[jails]',
      ...Object.entries(options.jails ?? DEFAULT_JAILS).map(([primary, sync]) => `${primary} = ${sync}`),
      '',
      ...(options.sections ?? []),
      '',
    ];
    await writeFile(this.configPath, lines.join('\n'));
  }

  /** Points this host at a hub (or mesh peers) from its next agent start on; its fail2ban and state_dir stay as they are. */
  async moveTo(brokers: Pick<HostOptions, 'peers' | 'brokerUrl'>): Promise<void> {
    delete this.options.peers;
    delete this.options.brokerUrl;
    Object.assign(this.options, brokers);
    await this.writeConfig();
  }

  /**
   * Starts the agent and waits until it is subscribed on at least one broker (its own, or the
   * hub); with `until: 'answering'`, only until it answers status (for a host cut off from its broker).
   * `launcher`: node given the flags of the installed wrapper and npm start, or none, as npm's bin link runs it.
   */
  async startAgent(args: string[] = [], until: 'subscribed' | 'answering' = 'subscribed', launcher: 'service' | 'bin' = 'service'): Promise<RunningProcess> {
    const program = launcher === 'service' ? AGENT_SERVICE : [BIN.agent];
    const clock = this.options.clockOffsetS === undefined ? {} : { [TEST_CLOCK_OFFSET_VARIABLE]: String(this.options.clockOffsetS) };
    const agent = new RunningProcess(...this.inside(process.execPath, [...program, '--config', this.configPath, ...args]), clock);
    this.agent = agent;
    if (until === 'subscribed') await this.waitSubscribed(1);
    else {
      await waitFor(async () => {
        if (!agent.alive) throw new Error(`${this.name}'s agent exited: ${agent.output.slice(-2000)}`);
        return this.agentStatus();
      }, `${this.name}'s agent answering status`, AGENT_START_MS);
    }
    return agent;
  }

  /** Waits until the status shows the agent subscribed on `count` brokers. */
  async waitSubscribed(count: number): Promise<void> {
    const agent = this.requireAgent();
    await waitFor(
      async () => {
        if (!agent.alive) throw new Error(`${this.name}'s agent exited: ${agent.output.slice(-2000)}`);
        const status = await this.agentStatus();
        return status.parts.filter((part) => part.kind === 'link' && part.details.state === 'connected').length >= count;
      },
      `${this.name}'s agent subscribed on ${count} broker(s)`,
      AGENT_START_MS,
    );
  }

  requireAgent(): RunningProcess {
    if (!this.agent) throw new Error(`${this.name} has no agent running`);
    return this.agent;
  }

  /**
   * Runs this host's syncfail2ban-client (what fail2ban's action runs). The client keeps its
   * own deadlines (connection_timeout); this one only stops a hang, and lets a -f of 100,000
   * on a loaded machine finish.
   */
  client(args: string[]): Promise<RunResult> {
    return run(...this.inside(process.execPath, [BIN.client, '--config', this.configPath, ...args]), 180_000);
  }

  /** [command, args] that run the program on this host: inside its network namespace, if it has one. */
  inside(program: string, args: string[]): [string, string[]] {
    return this.options.netns ? this.options.netns.wrap(program, args) : [program, args];
  }

  /** The running agent's status, asked over its control socket in-process: what polls read (no client process per poll). */
  async agentStatus(): Promise<AgentStatus> {
    return (await requestStatus(this.controlSocket, 10_000)).status;
  }

  /** The running agent's `syncfail2ban-client status --json` (exit 1 means unhealthy, not failed): for tests of what the client prints. */
  async status(): Promise<StatusJson> {
    const result = await this.client(['status', '--json']);
    if (result.stderr !== '' || result.code > 1) throw new Error(`${this.name}: status --json failed (${result.code}): ${result.stderr}`);
    return JSON.parse(result.stdout) as StatusJson;
  }

  banned(jail: string): Promise<string[]> {
    return this.fail2ban.banned(jail);
  }

  bannedCount(jail: string): Promise<number> {
    return this.fail2ban.bannedCount(jail);
  }

  async stop(): Promise<void> {
    await this.agent?.stop();
    await this.ownFail2ban?.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
