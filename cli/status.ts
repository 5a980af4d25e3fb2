import { connect } from 'node:net';
import type { ControlReply, StatusReport } from '../agent/control-protocol.js';
import { CORE_STATUS_KEYS, healthProblems } from '../agent/health.js';

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
    socket.on('connect', () => socket.write(`${JSON.stringify({ command: 'status' })}\n`));
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

/** Prints the report for people (or as JSON) and returns the exit code: 0 healthy, 1 not. */
export function printStatus(report: StatusReport, json: boolean, out: NodeJS.WritableStream = process.stdout): number {
  const problems = healthProblems(report.status);
  if (json) {
    out.write(`${JSON.stringify({ healthy: problems.length === 0, problems, ...report }, null, 2)}\n`);
  } else {
    out.write(renderStatus(report, problems, Date.now()));
  }
  return problems.length === 0 ? 0 : 1;
}

const MAX_PEERS_SHOWN = 50;
/** Long values of unknown parts are cut, to keep the output readable (--json has them whole). */
const MAX_VALUE_CHARS = 200;

export function renderStatus({ version, pid, startedAt, status }: StatusReport, problems: string[], now: number): string {
  const lines: string[] = [];
  lines.push(`syncfail2ban ${version}, pid ${pid}, up ${ago(startedAt, now)}`);
  lines.push(`node id:   ${status.nodeId}`);
  lines.push(`topology:  ${status.topology}${status.embeddedBroker ? ` (embedded broker on ${status.embeddedBroker})` : ''}`);
  lines.push('brokers:');
  if (status.links.length === 0) lines.push('  (none)');
  for (const link of status.links) {
    const state = link.state === 'connected' ? 'connected' : link.state.toUpperCase();
    lines.push(`  ${link.url}  ${state} for ${ago(link.since, now)}${link.state !== 'connected' && link.lastError ? `: ${link.lastError}` : ''}`);
    if (link.instances) {
      const others = link.instances.filter((url) => url !== link.url);
      const where = link.url === link.preferred ? 'its preferred instance' : `failed over from ${link.preferred}, returns when it answers`;
      lines.push(`    clustered hub: ${where}; ${link.failovers} failover(s); other instances: ${others.join(' ')}`);
    }
  }
  const peers = Object.entries(status.intake.peersSeen).sort(([, a], [, b]) => b.localeCompare(a));
  lines.push(`peers seen (last event): ${peers.length === 0 ? 'none yet' : ''}`.trimEnd());
  for (const [origin, at] of peers.slice(0, MAX_PEERS_SHOWN)) lines.push(`  ${origin}  ${ago(at, now)} ago`);
  if (peers.length > MAX_PEERS_SHOWN) lines.push(`  ... and ${peers.length - MAX_PEERS_SHOWN} more (--json lists all)`);
  const refused = Object.entries(status.refused);
  const refusedTotal = refused.reduce((sum, [, count]) => sum + count, 0);
  const { received, accepted, ownSkipped } = status.intake;
  lines.push(`events:    ${received} received, ${accepted} accepted, ${ownSkipped} own skipped, ${refusedTotal} refused`);
  if (refused.length > 0) lines.push(`refused:   ${refused.map(([reason, count]) => `${reason} ${count}`).join(', ')}`);
  lines.push('sinks:');
  if (Object.keys(status.sinks).length === 0) lines.push('  (none)');
  for (const [name, sink] of Object.entries(status.sinks)) {
    lines.push(
      `  ${name}  applied ${sink.applied} of ${sink.submitted}, backlog ${sink.backlog}, failures ${sink.failures}, dropped ${sink.dropped}` +
        (sink.lastError ? `, FAILING: ${sink.lastError}` : ''),
    );
  }
  lines.push(...renderFleet(status, now));
  // Parts added by extensions (the OPNsense bridge): shown as they come.
  for (const [key, value] of Object.entries(status as unknown as Record<string, unknown>)) {
    if (CORE_STATUS_KEYS.has(key)) continue;
    if (isScalar(value)) lines.push(`${key}: ${scalar(value)}`);
    else lines.push(`${key}:`, ...renderValue(value, '  '));
  }
  if (problems.length === 0) lines.push('healthy');
  else lines.push(`UNHEALTHY:`, ...problems.map((problem) => `  - ${problem}`));
  return `${lines.join('\n')}\n`;
}

const MAX_SNAPSHOTS_SHOWN = 20;

/** Holdings per primary jail and origin, the last snapshots, the last sync jail reconciliation. */
function renderFleet({ fleet, syncJails }: StatusReport['status'], now: number): string[] {
  const lines = [`holdings:  ${fleet.total} in ${fleet.stateDir}, ${fleet.unbansWithoutHolding} unban(s) from origins holding nothing${fleet.refusedAtCap ? `, ${fleet.refusedAtCap} refused at the cap` : ''}`];
  for (const [jail, origins] of Object.entries(fleet.holdings)) {
    const byCount = Object.entries(origins).sort(([, a], [, b]) => b - a);
    lines.push(`  ${jail}  ${byCount.slice(0, MAX_PEERS_SHOWN).map(([origin, count]) => `${origin} ${count}`).join(', ')}${byCount.length > MAX_PEERS_SHOWN ? ', ...' : ''}`);
  }
  const snapshots = [...fleet.snapshots].sort((a, b) => b.at.localeCompare(a.at));
  if (snapshots.length > 0) lines.push('snapshots (last per origin and jail):');
  for (const s of snapshots.slice(0, MAX_SNAPSHOTS_SHOWN)) {
    lines.push(
      `  ${s.origin} ${s.jail}  ${s.complete ? 'complete' : `INCOMPLETE (${s.partsReceived} of ${s.parts} parts)`}, ${s.addresses} address(es), ${s.added} added, ${s.released} released, ${ago(s.at, now)} ago`,
    );
  }
  if (syncJails) {
    const counts = (record: Record<string, number>) => Object.values(record).reduce((sum, n) => sum + n, 0);
    lines.push(
      `sync jails: reconciled ${ago(syncJails.at, now)} ago, ` +
        (syncJails.ok ? `${counts(syncJails.added)} added, ${counts(syncJails.removed)} removed${syncJails.adopted ? `, ${syncJails.adopted} adopted` : ''}` : `FAILED: ${syncJails.error}`),
    );
  }
  return lines;
}

/** YAML-like lines for a JSON value of unknown shape. */
function renderValue(value: unknown, indent: string): string[] {
  if (Array.isArray(value)) {
    if (value.length === 0) return [`${indent}(none)`];
    return value.flatMap((item) => {
      if (isScalar(item)) return [`${indent}- ${scalar(item)}`];
      const [first = '', ...rest] = renderValue(item, `${indent}  `);
      return [`${indent}- ${first.slice(indent.length + 2)}`, ...rest];
    });
  }
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0) return [`${indent}(none)`];
    return entries.flatMap(([key, child]) => (isScalar(child) ? [`${indent}${key}: ${scalar(child)}`] : [`${indent}${key}:`, ...renderValue(child, `${indent}  `)]));
  }
  return [`${indent}${scalar(value)}`];
}

function isScalar(value: unknown): boolean {
  return typeof value !== 'object' || value === null;
}

function scalar(value: unknown): string {
  if (value === null) return 'none';
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS)}...` : text;
}

/** "3d 4h", "5m 2s", "7s" since an ISO time. */
function ago(iso: string, now: number): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (!Number.isFinite(seconds)) return iso;
  const units: Array<[string, number]> = [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ];
  const parts: string[] = [];
  let rest = seconds;
  for (const [unit, size] of units) {
    if (rest >= size || (unit === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}
