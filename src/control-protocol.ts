import { connect } from 'node:net';
import type { AgentStatus } from './status.js';

/**
 * The control socket's protocol: the client sends one JSON request on one line, the agent
 * answers with one JSON line and closes the connection.
 */
export interface ControlRequest {
  command: 'status';
}

/** What `status` answers: the agent's own status plus who is answering. */
export interface StatusReport {
  version: string;
  pid: number;
  startedAt: string;
  status: AgentStatus;
}

export type ControlReply = { ok: true; report: StatusReport } | { ok: false; error: string };

/** A request is a few dozen bytes; anything longer is refused unread. */
export const MAX_REQUEST_BYTES = 4096;

/** Thrown when the agent cannot be asked; the message says what to do. */
export class StatusUnavailable extends Error {
  override readonly name = 'StatusUnavailable';
}

/** Asks the running agent for its status over its control socket. */
export function requestStatus(socketPath: string, timeoutMs: number): Promise<StatusReport> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path: socketPath });
    let received = '';
    const fail = (message: string) => {
      socket.destroy();
      reject(new StatusUnavailable(message));
    };
    socket.setTimeout(timeoutMs, () => fail(`the agent did not answer on ${socketPath} within ${timeoutMs} ms; is it hung? (journalctl -u syncfail2ban)`));
    socket.on('connect', () => socket.write(`${JSON.stringify({ command: 'status' } satisfies ControlRequest)}\n`));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
      if (received.length > 64 * 1024 * 1024) fail(`the agent's answer on ${socketPath} is implausibly large`);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => fail(connectProblem(socketPath, error)));
    socket.on('end', () => {
      let reply: ControlReply;
      try {
        reply = JSON.parse(received) as ControlReply;
      } catch {
        return fail(`the answer on ${socketPath} is not the agent's JSON (${JSON.stringify(received.slice(0, 80))}); is control_socket right?`);
      }
      if (!reply.ok) return fail(`the agent answered with an error: ${reply.error}`);
      resolve(reply.report);
    });
  });
}

function connectProblem(path: string, error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ENOENT':
      return `no control socket at ${path}: the agent is not running (systemctl status syncfail2ban), or control_socket differs from the agent's config`;
    case 'ECONNREFUSED':
      return `nothing answers on ${path}: the agent is not running (systemctl status syncfail2ban)`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied on ${path}: run syncfail2ban-client status as root`;
    default:
      return `cannot reach the agent on ${path} (${error.code ?? error.message})`;
  }
}
