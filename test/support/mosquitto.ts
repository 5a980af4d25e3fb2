import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { RunningProcess } from './process.js';
import { waitFor } from './wait.js';

export interface Mosquitto {
  url: string;
  host: string;
  port: number;
  process: RunningProcess;
  stop(): Promise<void>;
}

/** A real mosquitto on loopback, anonymous, no persistence: the "any MQTT broker" of hub mode. */
export async function startMosquitto(extraConfig = ''): Promise<Mosquitto> {
  const dir = await mkdtemp(join(tmpdir(), 'sf2b-mosquitto-'));
  const host = '127.0.0.1';
  const port = await freePort(host);
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(conf, [`listener ${port} ${host}`, 'allow_anonymous true', 'persistence false', 'log_dest stdout', extraConfig].join('\n'));
  const proc = new RunningProcess('mosquitto', ['-c', conf]);
  await waitFor(() => canConnect(host, port) || (!proc.alive && Promise.reject(new Error(proc.output))), `mosquitto on ${host}:${port}`);
  return {
    url: `mqtt://${host}:${port}`,
    host,
    port,
    process: proc,
    async stop() {
      await proc.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
