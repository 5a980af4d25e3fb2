import type { StatusReport } from '../control-protocol.js';
import { healthProblems, partLabel, type Detail, type Measure, type PartProblem, type PartStatus } from '../status.js';

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

/** Labelled measures (peers seen, refusals) show this many values; --json has them all. */
const MAX_VALUES_SHOWN = 50;

/** Every part as reported, in the agent's order, then the verdict: the same for every kind of part. */
export function renderStatus({ program, version, pid, startedAt, status }: StatusReport, problems: PartProblem[], now: number): string {
  const lines: string[] = [];
  lines.push(`${program} ${version}, pid ${pid}, up ${ago(startedAt, now)}`);
  lines.push(`node id:   ${status.nodeId}`);
  lines.push(`topology:  ${status.topology}${status.dryRun ? ' (DRY RUN: nothing is applied)' : ''}`);
  for (const part of status.parts) lines.push(...renderPart(part, now));
  if (problems.length === 0) lines.push('healthy');
  else lines.push('UNHEALTHY:', ...problems.flatMap(({ part, what, fix }) => [`  - ${part}: ${what}`, `    fix: ${fix}`]));
  return `${lines.join('\n')}\n`;
}

function renderPart(part: PartStatus, now: number): string[] {
  const lines = [partLabel(part), ...Object.entries(part.details).map(([key, value]) => `  ${words(key)}: ${detail(value, now)}`)];
  const measures = Object.entries(part.measures);
  const single = measures.flatMap(([key, measure]) => ('value' in measure ? [`${words(key)} ${number(measure, measure.value, now)}`] : []));
  if (single.length > 0) lines.push(`  ${single.join(', ')}`);
  for (const [key, measure] of measures) if ('values' in measure) lines.push(`  ${words(key)}: ${labelled(measure, now)}`);
  return lines;
}

function labelled(measure: Measure & { values: Record<string, number> }, now: number): string {
  const entries = Object.entries(measure.values);
  if (entries.length === 0) return 'none';
  // Timestamps newest first; counts largest first.
  entries.sort(([, a], [, b]) => b - a);
  const shown = entries.slice(0, MAX_VALUES_SHOWN).map(([label, value]) => `${label} ${number(measure, value, now)}`);
  if (entries.length > MAX_VALUES_SHOWN) shown.push(`... and ${entries.length - MAX_VALUES_SHOWN} more (--json lists all)`);
  return shown.join(', ');
}

function number(measure: Measure, value: number, now: number): string {
  if (measure.unit === 'timestamp') {
    // A time to come (the next lease end) reads as such.
    return value * 1000 > now ? `in ${ago(new Date(now).toISOString(), value * 1000)}` : `${ago(new Date(value * 1000).toISOString(), now)} ago`;
  }
  return measure.unit === 'bytes' ? `${(value / 2 ** 20).toFixed(1)} MB` : String(value);
}

function detail(value: Detail, now: number): string {
  if (value === null) return 'none';
  if (typeof value !== 'object') return String(value);
  if ('time' in value) return `${value.time} (${ago(value.time, now)} ago)`;
  return Object.entries(value.fields)
    .map(([key, field]) => `${words(key)} ${detail(field, now)}`)
    .join(', ');
}

function words(key: string): string {
  return key.replace(/_/g, ' ');
}

/** "3d 4h", "5m 2s", "7s" since an ISO time. */
export function ago(iso: string, now: number): string {
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
