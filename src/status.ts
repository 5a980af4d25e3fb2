/**
 * What the agent reports about itself, part by part (see src/part.ts), and what is
 * healthy. Shared by the agent (control socket, /metrics) and syncfail2ban-client status.
 */

/** What is wrong, and what the operator does about it. */
export interface Problem {
  what: string;
  fix: string;
}

/** A number shown in status and exported as a metric; `counter`s only ever grow; a `timestamp` is in seconds since the epoch. */
export type Measure = { help: string; type: 'counter' | 'gauge'; unit?: 'timestamp' | 'bytes' } & (
  | { value: number }
  /** One number per label value, e.g. refusals by reason. */
  | { label: string; values: Record<string, number> }
);

type Scalar = string | number | boolean | null;

/** Shown in status as is; `{ time }` (ISO) with how long ago it was; `{ fields }` as one line of them. */
export type Detail = Scalar | { time: string } | { fields: Record<string, Scalar> };

export interface PartStatus {
  /** What sort of part: `broker`, `link`, `events`, `sink`, `bridge`, `control`, `metrics`... Names its metrics. */
  kind: string;
  /** Which one, when the agent can have several of this kind (a broker URL, a sink name). */
  name?: string;
  /** Empty while the part works. Any problem makes the agent unhealthy. */
  problems: Problem[];
  /** Keys are snake_case: they become metric names. */
  measures: Record<string, Measure>;
  details: Record<string, Detail>;
}

export interface AgentStatus {
  nodeId: string;
  topology: 'mesh' | 'hub';
  dryRun: boolean;
  parts: PartStatus[];
}

/** A problem with the part it belongs to (`link mqtt://...`, `sink fail2ban`). */
export interface PartProblem extends Problem {
  part: string;
}

/** `link mqtt://host:1883`, or the kind alone for a part the agent has only one of. */
export function partLabel(status: Pick<PartStatus, 'kind' | 'name'>): string {
  return status.name === undefined ? status.kind : `${status.kind} ${status.name}`;
}

/** Every part's problems; the agent is healthy when there are none. */
export function healthProblems(status: AgentStatus): PartProblem[] {
  return status.parts.flatMap((part) => part.problems.map((problem) => ({ part: partLabel(part), ...problem })));
}

/** A counter or gauge of one value, e.g. `counter('changes applied to the target', applied)`. */
export function counter(help: string, value: number): Measure {
  return { help, type: 'counter', value };
}

export function gauge(help: string, value: number): Measure {
  return { help, type: 'gauge', value };
}

/** One number per label value, e.g. `counted('refused messages, by reason', 'reason', byReason)`. */
export function counted(help: string, label: string, values: Record<string, number>): Measure {
  return { help, type: 'counter', label, values };
}
