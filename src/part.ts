import type { PartStatus } from './status.js';

/**
 * The one lifecycle every part of the agent has (embedded broker, broker links, intake,
 * sinks, the OPNsense bridge, the control socket, the metrics endpoint, the heap trim), as Zigbee2MQTT's
 * extensions have. To add a part:
 *
 *  1. implement `Part`: `start()` (throw only when the agent must not run without the part;
 *     any other failure, e.g. a port in use, is kept as a problem in `status()`),
 *     `stop(deadlineMs)` (never throws; gives up at the deadline) and `status()`;
 *  2. add it to `Agent`'s list of parts (or to `subparts` of the part that owns it).
 *
 * Nothing else: health (`problems`), `syncfail2ban-client status` (text and --json) and
 * `/metrics` are derived from `PartStatus` (src/status.ts) alone. A measure `applied` of kind `sink` is the
 * metric `syncfail2ban_sink_applied_total{sink="<name>"}` (no name label for a part the agent
 * has only one of, whose `name` is absent); a labelled measure adds its label.
 */
export interface Part {
  start(): Promise<void>;
  stop(deadlineMs: number): Promise<void>;
  status(): PartStatus;
  /**
   * Looks again at what its status reports, for a status request that wants it fresh (a sync
   * jail just created, fail2ban just started): set by parts whose problems are otherwise
   * re-checked only every few seconds. Never throws.
   */
  refresh?(): Promise<void>;
  /**
   * Set by parts that should keep running across a reload while their config is the same
   * (the embedded broker, the links): equal keys in the running and the next agent mean the
   * next takes the running part over instead of starting its own. See reloadKey().
   */
  readonly reloadKey?: string;
  /** Parts this one starts and stops itself, each reporting its own status (the bridge's firewalls). */
  readonly subparts?: readonly Part[];
}

/** Every part and subpart, in start order (a subpart after its owner). */
export function allParts(parts: readonly Part[]): Part[] {
  return parts.flatMap((part) => [part, ...allParts(part.subparts ?? [])]);
}

/** A reloadKey: the part's kind and every setting it is built from, as text (Maps and Sets as lists). */
export function reloadKey(kind: string, settings: unknown): string {
  return `${kind} ${JSON.stringify(settings, (_key, value: unknown) => (value instanceof Map || value instanceof Set ? [...value] : value))}`;
}
