import type { Socket } from 'node:net';
import { MAX_REQUEST_BYTES, type ControlReply, type StatusReport } from '../control-protocol.js';
import type { Part } from '../part.js';
import type { PartStatus } from '../status.js';
import { programVersion } from '../version.js';
import { PrivateSocketServer } from './private-socket.js';
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
  private readonly version = programVersion();
  private readonly server: PrivateSocketServer;

  constructor(
    path: string,
    private readonly reporter: Reporter,
  ) {
    this.server = new PrivateSocketServer({ path, key: reporter.key('control_socket'), program: reporter.program, serve: (socket) => this.serve(socket), maxConnections: MAX_CONTROL_CONNECTIONS });
  }

  async start(): Promise<void> {
    const { server, reporter } = this;
    const problem = await server.listen();
    if (!problem) {
      reporter.log.debug({ controlSocket: server.path }, 'control socket ready');
      return;
    }
    reporter.log.warn({ controlSocket: server.path }, `no control socket (status will not work): ${problem.what}; fix: ${problem.fix}`);
  }

  async stop(): Promise<void> {
    await this.server.close();
  }

  status(): PartStatus {
    const { problem, path } = this.server;
    return { kind: 'control', problems: problem ? [{ what: `no control socket: ${problem.what}`, fix: problem.fix }] : [], measures: {}, details: { socket: path } };
  }

  private serve(socket: Socket): void {
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
    const { program, log, fleet, ownSnapshots } = this.reporter;
    // What this program answers: the broker has no fleet.
    const commands = ['status', ...(fleet ? ['fleet'] : []), ...(ownSnapshots ? ['snapshots'] : [])];
    if (typeof command !== 'string' || !commands.includes(command)) {
      const named = commands.map((name) => `"${name}"`);
      return { ok: false, error: `unknown command ${JSON.stringify(command)}; the commands are ${named.length > 1 ? `${named.slice(0, -1).join(', ')} and ${named.at(-1)}` : named[0]}` };
    }
    try {
      if (command === 'fleet') return { ok: true, fleet: fleet!() };
      if (command === 'snapshots') return { ok: true, snapshots: ownSnapshots!() };
      const status = this.reporter.freshStatus ? await this.reporter.freshStatus() : this.reporter.status();
      const report: StatusReport = { program, version: this.version, pid: process.pid, startedAt: PROCESS_STARTED_AT, status };
      return { ok: true, report };
    } catch (error) {
      log.error({ err: (error as Error).message, command }, 'could not answer on the control socket');
      return { ok: false, error: `${program} could not collect its ${command}: ${(error as Error).message}` };
    }
  }
}
