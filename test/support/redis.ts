import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { RunningProcess } from './process.js';
import { run } from './run.js';

export interface RedisTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export interface RedisOptions {
  password?: string;
  /** Serve TLS only (rediss://), with this server certificate; clients need no certificate. */
  tls?: RedisTls;
}

export interface PrivateRedis {
  /** redis:// or rediss:// URL with the password, as written in cluster_redis_url. */
  readonly url: string;
  readonly port: number;
  readonly process: RunningProcess;
  /** `redis-cli ...args` against this server, trimmed stdout. */
  cli(...args: string[]): Promise<string>;
  /** Stops the server (SIGTERM) and keeps its port for startProcess(). */
  stopProcess(): Promise<void>;
  startProcess(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A real redis-server on a free loopback port, started as a normal server with nothing
 * saved to disk (no RDB, no AOF): what a clustered hub needs and no more.
 */
export async function startRedis(options: RedisOptions = {}): Promise<PrivateRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'sf2b-redis-'));
  const host = '127.0.0.1';
  const port = await freePort(host);
  const args = ['--bind', host, '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'];
  args.push(...(options.tls
    ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', options.tls.certFile, '--tls-key-file', options.tls.keyFile, '--tls-ca-cert-file', options.tls.caFile, '--tls-auth-clients', 'no']
    : ['--port', String(port)]));
  if (options.password) args.push('--requirepass', options.password);
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
  const cliArgs = ['-h', host, '-p', String(port), ...(options.password ? ['--no-auth-warning', '-a', options.password] : []),
    ...(options.tls ? ['--tls', '--cacert', options.tls.caFile] : [])];

  let proc!: RunningProcess;
  const redis: PrivateRedis = {
    url: `${options.tls ? 'rediss' : 'redis'}://${auth}${host}:${port}`,
    port,
    get process() {
      return proc;
    },
    async cli(...command: string[]) {
      const result = await run('redis-cli', [...cliArgs, ...command]);
      if (result.code !== 0) throw new Error(`redis-cli ${command.join(' ')} failed: ${result.stderr}`);
      return result.stdout.trim();
    },
    async stopProcess() {
      await proc.stop();
    },
    async startProcess() {
      proc = new RunningProcess('redis-server', args);
      await proc.waitForOutput(/Ready to accept connections/, `redis-server on port ${port}`);
    },
    async stop() {
      await proc.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  await redis.startProcess();
  return redis;
}
