import { connect } from 'node:net';
import type { Program } from './reporting/reporter.js';
import type { AgentStatus } from './status.js';

/**
 * The control socket's protocol: the client sends one JSON request on one line, the agent
 * answers with one JSON line and closes the connection.
 */
export interface ControlRequest {
  command: 'status' | 'fleet' | 'snapshots';
}

/** What `status` answers: the program's own status plus who is answering. */
export interface StatusReport {
  program: Program;
  version: string;
  pid: number;
  startedAt: string;
  status: AgentStatus;
}

/** What `fleet` answers (the agent only): who holds what, per primary jail, as this agent's fleet state has it. */
export interface FleetView {
  nodeId: string;
  jails: FleetJail[];
  /** When a valid event or snapshot from each origin last arrived (ISO), for the origins heard from lately. */
  lastEvents: Record<string, string>;
}

export interface FleetJail {
  jail: string;
  /** Addresses with at least one holding. */
  addresses: number;
  /** Holdings per origin in this jail, the most first. */
  origins: Array<{ origin: string; holdings: number }>;
  /** The addresses held by the most origins (at least two), the most first. */
  mostHeld: Array<{ address: string; origins: string[] }>;
}

/** What `snapshots` answers (the agent only): per jail, the newest snapshot this host published, as its agent received it back. For -f, which asks until it is whole: far cheaper for a busy agent than its status. */
export interface OwnSnapshot {
  jail: string;
  id: string;
  complete: boolean;
  partsReceived: number;
}

export type ControlReply = { ok: true; report: StatusReport } | { ok: true; fleet: FleetView } | { ok: true; snapshots: OwnSnapshot[] } | { ok: false; error: string };

/** A request is a few dozen bytes; anything longer is refused unread. */
export const MAX_REQUEST_BYTES = 4096;

/** Thrown when the program cannot be asked; the message says what to do. */
export class StatusUnavailable extends Error {
  override readonly name = 'StatusUnavailable';
}

/** Asks the running agent (or syncfail2ban-broker) for its status over its control socket. */
export async function requestStatus(socketPath: string, timeoutMs: number, program: Program = 'syncfail2ban'): Promise<StatusReport> {
  const reply = await request(socketPath, 'status', timeoutMs, program);
  if (!('report' in reply)) throw new StatusUnavailable(`the answer on ${socketPath} has no status; is control_socket right?`);
  return reply.report;
}

/** Asks the running agent for its view of the fleet (`syncfail2ban-client status --fleet`). */
export async function requestFleet(socketPath: string, timeoutMs: number): Promise<FleetView> {
  const reply = await request(socketPath, 'fleet', timeoutMs, 'syncfail2ban');
  if (!('fleet' in reply)) throw new StatusUnavailable(`the answer on ${socketPath} has no fleet view; is control_socket right?`);
  return reply.fleet;
}

/** Asks the running agent for this host's own snapshots as it received them back (`-f`). */
export async function requestOwnSnapshots(socketPath: string, timeoutMs: number): Promise<OwnSnapshot[]> {
  const reply = await request(socketPath, 'snapshots', timeoutMs, 'syncfail2ban');
  if (!('snapshots' in reply)) throw new StatusUnavailable(`the answer on ${socketPath} has no snapshots; is control_socket right?`);
  return reply.snapshots;
}

function request(socketPath: string, command: ControlRequest['command'], timeoutMs: number, program: Program): Promise<Extract<ControlReply, { ok: true }>> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path: socketPath });
    let received = '';
    const fail = (message: string) => {
      socket.destroy();
      reject(new StatusUnavailable(message));
    };
    socket.setTimeout(timeoutMs, () => fail(`${who(program)} did not answer on ${socketPath} within ${timeoutMs} ms; is it hung? (journalctl -u ${program})`));
    socket.on('connect', () => socket.write(`${JSON.stringify({ command } satisfies ControlRequest)}\n`));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
      if (received.length > 64 * 1024 * 1024) fail(`the answer on ${socketPath} is implausibly large`);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => fail(connectProblem(socketPath, program, error)));
    socket.on('end', () => {
      let reply: ControlReply;
      try {
        reply = JSON.parse(received) as ControlReply;
      } catch {
        return fail(`the answer on ${socketPath} is not ${who(program)}'s JSON (${JSON.stringify(received.slice(0, 80))}); is control_socket right?`);
      }
      if (!reply.ok) return fail(`${who(program)} answered with an error: ${reply.error}`);
      resolve(reply);
    });
  });
}

function connectProblem(path: string, program: Program, error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ENOENT':
      return `no control socket at ${path}: ${who(program)} is not running (systemctl status ${program}), or control_socket differs from ${who(program)}'s config`;
    case 'ECONNREFUSED':
      return `nothing answers on ${path}: ${who(program)} is not running (systemctl status ${program})`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied on ${path}: ask for the status as root`;
    default:
      return `cannot reach ${who(program)} on ${path} (${error.code ?? error.message})`;
  }
}

/** How messages name the program: the agent, or syncfail2ban-broker. */
function who(program: Program): string {
  return program === 'syncfail2ban' ? 'the agent' : program;
}
