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
