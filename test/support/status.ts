import type { AgentStatus, PartStatus } from '../../src/status.js';

/** The part of `kind` (and `name`) in an agent's status; throws when there is none. */
export function part(status: AgentStatus, kind: string, name?: string): PartStatus {
  const found = status.parts.find((candidate) => candidate.kind === kind && (name === undefined || candidate.name === name));
  if (!found) throw new Error(`no ${kind}${name ? ` ${name}` : ''} in the status (parts: ${status.parts.map((p) => `${p.kind} ${p.name ?? ''}`).join(', ')})`);
  return found;
}

/** A single-valued measure of a part. */
export function measured(status: PartStatus, key: string): number {
  const measure = status.measures[key];
  if (!measure || !('value' in measure)) throw new Error(`${status.kind} has no measure ${key}`);
  return measure.value;
}

/** A labelled measure of a part (label value -> number). */
export function measuredBy(status: PartStatus, key: string): Record<string, number> {
  const measure = status.measures[key];
  if (!measure || !('values' in measure)) throw new Error(`${status.kind} has no labelled measure ${key}`);
  return measure.values;
}
