import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { MAX_REQUEST_BYTES, type ControlReply, type StatusReport } from '../control-protocol.js';
import type { Part } from '../part.js';
import type { PartStatus, Problem } from '../status.js';
import { programVersion } from '../version.js';
import type { Reporter } from './reporter.js';

const IDLE_TIMEOUT_MS = 5_000;
/** When the process started: status says "pid N, up ...", and a reload (which builds a new ControlServer) does not restart the process. */
const PROCESS_STARTED_AT = new Date(Date.now() - process.uptime() * 1000).toISOString();

/** Connections open at once; Node closes any beyond at once. A request takes well under a millisecond. */
export const MAX_CONTROL_CONNECTIONS = 16;

/**
 * The program's side of `syncfail2ban-client status` (and `syncfail2ban-broker status`): a
 * unix socket, mode 0600 in a 0700 directory (root only: it tells what the program is
 * connected to), answering one JSON request line with one JSON line. It never takes down the
 * program: when the socket cannot be made, that is a problem in the status (and the log), and
 * the program runs without it.
 */
export class ControlServer implements Part {
  private readonly sockets = new Set<Socket>();
  private readonly version = programVersion();
  private server: Server | undefined;
  private problem: Problem | null = null;

  constructor(
    private readonly path: string,
    private readonly reporter: Reporter,
  ) {}

  async start(): Promise<void> {
    const { path, reporter } = this;
    const { log } = reporter;
    this.problem = await prepare(path, reporter);
    if (!this.problem) {
      const server = createServer();
      server.maxConnections = MAX_CONTROL_CONNECTIONS;
      try {
        await listenPrivately(server, path);
        server.on('connection', (socket) => this.serve(socket));
        this.server = server;
        log.debug({ controlSocket: path }, 'control socket ready');
        return;
      } catch (error) {
        this.problem = { what: `cannot listen on ${path}: ${(error as Error).message}`, fix: `set ${reporter.key('control_socket')} to a path this user may create` };
      }
    }
    log.warn({ controlSocket: path }, `no control socket (status will not work): ${this.problem.what}; fix: ${this.problem.fix}`);
  }

  async stop(): Promise<void> {
    const { server } = this;
    if (!server) return;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await unlink(this.path).catch(() => undefined);
  }

  status(): PartStatus {
    return { kind: 'control', problems: this.problem ? [{ what: `no control socket: ${this.problem.what}`, fix: this.problem.fix }] : [], measures: {}, details: { socket: this.path } };
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy());
    let received = '';
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
      const end = received.indexOf('\n');
      if (end < 0 && received.length <= MAX_REQUEST_BYTES) return;
      socket.removeAllListeners('data');
      const reply = end < 0 ? Promise.resolve({ ok: false as const, error: `request longer than ${MAX_REQUEST_BYTES} bytes` }) : this.answer(received.slice(0, end));
      void reply.then((answer) => socket.end(`${JSON.stringify(answer)}\n`));
    });
  }

  private async answer(line: string): Promise<ControlReply> {
    let request: unknown;
    try {
      request = JSON.parse(line);
    } catch {
      return { ok: false, error: 'the request is not JSON; send {"command":"status"} on one line' };
    }
    const command = typeof request === 'object' && request !== null ? (request as Record<string, unknown>).command : undefined;
    if (command !== 'status') return { ok: false, error: `unknown command ${JSON.stringify(command)}; the only command is "status"` };
    const { program, log } = this.reporter;
    try {
      const status = this.reporter.freshStatus ? await this.reporter.freshStatus() : this.reporter.status();
      const report: StatusReport = { program, version: this.version, pid: process.pid, startedAt: PROCESS_STARTED_AT, status };
      return { ok: true, report };
    } catch (error) {
      log.error({ err: (error as Error).message }, 'could not collect the status for the control socket');
      return { ok: false, error: `${program} could not collect its status: ${(error as Error).message}` };
    }
  }
}

/** Makes room for the socket: creates its directory, removes a stale socket. Returns a problem, or null. */
async function prepare(path: string, { program, key }: Reporter): Promise<Problem | null> {
  const keyName = key('control_socket');
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  } catch (error) {
    return { what: `cannot create ${dirname(path)} (${(error as NodeJS.ErrnoException).code})`, fix: `run as root, or set ${keyName} to a path this user may create` };
  }
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch {
    return null; // nothing there
  }
  if (!isSocket) return { what: `${path} exists and is not a socket`, fix: `remove it, or set ${keyName} to another path` };
  if (await answers(path)) {
    return { what: `another process already answers on ${path}`, fix: `stop that one, or give each ${program} its own ${keyName}` };
  }
  try {
    await unlink(path); // left behind by a process that was killed
  } catch (error) {
    return { what: `cannot remove the stale socket ${path} (${(error as NodeJS.ErrnoException).code})`, fix: `remove it as root, or set ${keyName} to another path` };
  }
  return null;
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect({ path }, () => {
      probe.destroy();
      resolve(true);
    });
    probe.on('error', () => resolve(false));
  });
}

/** Binds with umask 0177 so the socket is never reachable by others, not even for a moment. */
async function listenPrivately(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const umask = process.umask(0o177);
    try {
      server.listen({ path }, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(umask);
    }
  });
  await chmod(path, 0o600);
}
