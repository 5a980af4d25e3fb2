import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN } from './paths.js';
import { freePort } from './ports.js';
import { RunningProcess } from './process.js';

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
