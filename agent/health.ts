import type { AgentStatus } from './agent.js';

/** The parts of AgentStatus this file and the status printer know; others are extensions' (the bridge's). */
export const CORE_STATUS_KEYS: ReadonlySet<string> = new Set(['nodeId', 'topology', 'embeddedBroker', 'links', 'intake', 'refused', 'sinks', 'fleet', 'syncJails']);

/**
 * What is wrong with a running agent, one line each; empty when it is healthy. Unhealthy:
 * a broker link that is not connected, a sink whose last attempt failed (its backlog is then
 * stuck until the target answers again), and, in parts of the status this file does not
 * know (e.g. the OPNsense bridge's), any object carrying a non-empty `lastError`; a holdings
 * store that cannot be written.
 */
export function healthProblems(status: AgentStatus): string[] {
  const problems: string[] = [];
  for (const link of status.links) {
    if (link.state !== 'connected') {
      problems.push(`broker ${link.url} is ${link.state} since ${link.since}${link.lastError ? ` (${link.lastError})` : ''}`);
    }
  }
  for (const [name, sink] of Object.entries(status.sinks)) {
    if (sink.lastError) problems.push(`sink ${name} is failing with ${sink.backlog} change(s) waiting: ${sink.lastError}`);
  }
  if (status.fleet.lastError) problems.push(`holdings store: ${status.fleet.lastError}`);
  for (const [key, value] of Object.entries(status)) {
    if (!CORE_STATUS_KEYS.has(key)) findErrors(value, key, problems);
  }
  return problems;
}

function findErrors(value: unknown, path: string, problems: string[]): void {
  if (Array.isArray(value)) {
    value.forEach((item, index) => findErrors(item, `${path}[${index}]`, problems));
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const record = value as Record<string, unknown>;
  if (typeof record.lastError === 'string' && record.lastError !== '') problems.push(`${path}: ${record.lastError}`);
  for (const [key, child] of Object.entries(record)) {
    if (key !== 'lastError') findErrors(child, `${path}.${key}`, problems);
  }
}
