import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from './paths.js';
import { freePort } from './ports.js';
import { RunningProcess } from './process.js';
import { waitFor } from './wait.js';

export interface StandaloneBroker {
  url: string;
  host: string;
  port: number;
  /** The running syncfail2ban-broker process (a new one after start()). */
  readonly process: RunningProcess;
  /** Starts the process again on the same port and config. */
  start(): Promise<void>;
  /** SIGTERM and back; resolves once it listens again. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** A syncfail2ban-broker process listening on mq_ip:mq_port from its own config file; `extra` lines follow the [default] keys (and may open further sections). */
export async function startStandaloneBroker(extra: string[] = []): Promise<StandaloneBroker> {
  const dir = await mkdtemp(join(tmpdir(), 'sf2b-broker-'));
  const host = '127.0.0.1';
  const port = await freePort(host);
  const config = join(dir, 'config.cfg');
  await writeFile(config, ['[default]', `mq_ip = ${host}`, `mq_port = ${port}`, ...extra, ''].join('\n'), { mode: 0o600 });
  let proc!: RunningProcess;
  const broker: StandaloneBroker = {
    url: `mqtt://${host}:${port}`,
    host,
    port,
    get process() {
      return proc;
    },
    async start() {
      proc = new RunningProcess(process.execPath, [BIN.broker, '--config', config]);
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

/** Two syncfail2ban-broker instances clustered over the Redis at `redisUrl`, each once it has reached Redis; `extra` as for startStandaloneBroker. */
export async function startBrokerPair(redisUrl: string, extra: string[] = []): Promise<[StandaloneBroker, StandaloneBroker]> {
  const lines = [`cluster_redis_url = ${redisUrl}`, ...extra];
  const pair = await Promise.all([startStandaloneBroker(lines), startStandaloneBroker(lines)]);
  for (const broker of pair) await waitFor(() => logCount(broker, /connected to Redis/) === 1, 'the instance to reach Redis');
  return pair;
}
