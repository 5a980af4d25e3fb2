import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requestStatus } from '../../src/control-protocol.js';
import type { AgentStatus } from '../../src/status.js';
import { BIN } from './paths.js';
import { freePort } from './ports.js';
import { RunningProcess } from './process.js';
import { run, type RunResult } from './run.js';
import { waitFor } from './wait.js';

export interface StandaloneBroker {
  url: string;
  host: string;
  port: number;
  /** The running syncfail2ban-broker process (a new one after start()). */
  readonly process: RunningProcess;
  /** Its control socket ([broker] control_socket), in its own temp dir. */
  readonly controlSocket: string;
  /** Its status over the control socket, asked in-process (what polls read). */
  status(): Promise<AgentStatus>;
  /** `syncfail2ban-broker status ...args` against its config. */
  statusCommand(...args: string[]): Promise<RunResult>;
  /** Starts the process again on the same port and config. */
  start(): Promise<void>;
  /** SIGTERM and back; resolves once it listens again. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A syncfail2ban-broker process listening on mq_ip:mq_port from its own config file; `extra`
 * lines follow the [default] keys (and may open further sections); `brokerSection` lines
 * follow `[broker] control_socket`; `nodeArgs` go to node before the program (e.g. --cpu-prof).
 */
export async function startStandaloneBroker(extra: string[] = [], brokerSection: string[] = [], nodeArgs: string[] = []): Promise<StandaloneBroker> {
  const dir = await mkdtemp(join(tmpdir(), 'sf2b-broker-'));
  const host = '127.0.0.1';
  const port = await freePort(host);
  const config = join(dir, 'config.cfg');
  const controlSocket = join(dir, 'control.sock');
  await writeFile(config, ['[default]', `mq_ip = ${host}`, `mq_port = ${port}`, ...extra, '', '[broker]', `control_socket = ${controlSocket}`, ...brokerSection, ''].join('\n'), { mode: 0o600 });
  let proc!: RunningProcess;
  const broker: StandaloneBroker = {
    url: `mqtt://${host}:${port}`,
    host,
    port,
    controlSocket,
    get process() {
      return proc;
    },
    async status() {
      return (await requestStatus(controlSocket, 10_000, 'syncfail2ban-broker')).status;
    },
    statusCommand(...args: string[]) {
      return run(process.execPath, [BIN.broker, '--config', config, 'status', ...args]);
    },
    async start() {
      proc = new RunningProcess(process.execPath, [...nodeArgs, BIN.broker, '--config', config]);
      await proc.waitForOutput(/MQTT broker listening/, 'syncfail2ban-broker to listen');
    },
    async restart() {
      const code = await proc.stop();
      if (code !== 0) throw new Error(`syncfail2ban-broker exited with ${code}: ${proc.output.slice(-2000)}`);
      await broker.start();
    },
    async stop() {
      await proc.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  await broker.start();
  return broker;
}

/** How many of the broker process's log lines have a message matching `msg`. */
export function logCount(broker: StandaloneBroker, msg: RegExp): number {
  return broker.process.logLines().filter((line) => msg.test(String(line.msg))).length;
}

/** A cluster_key, new for each cluster a test starts. */
export function newClusterKey(): string {
  return randomBytes(32).toString('hex');
}

/**
 * Two syncfail2ban-broker instances clustered over the Redis at `redisUrl` with one new
 * cluster_key, each once it has reached Redis; `extra` and `brokerSection` as for startStandaloneBroker.
 */
export async function startBrokerPair(redisUrl: string, extra: string[] = [], brokerSection: string[] = []): Promise<[StandaloneBroker, StandaloneBroker]> {
  const lines = [`cluster_redis_url = ${redisUrl}`, `cluster_key = ${newClusterKey()}`, ...extra];
  const pair = await Promise.all([startStandaloneBroker(lines, brokerSection), startStandaloneBroker(lines, brokerSection)]);
  for (const broker of pair) await waitFor(() => logCount(broker, /connected to Redis/) === 1, 'the instance to reach Redis');
  return pair;
}
