/** What the fleet bench's parent and its simulated-host workers (sim-worker.ts) say to each other over IPC. */

/** One simulated host: its loopback source address and the broker ports it tries, its preferred one first. */
export interface SimHostSpec {
  index: number;
  localAddress: string;
  ports: number[];
}

export type ToWorker =
  | { type: 'start'; hosts: SimHostSpec[] }
  /** Publish one ban from host `host`; `key` identifies the ban in arrivals. */
  | { type: 'ban'; host: number; key: number; topic: string; payload: string }
  /** Publish the parts of one snapshot from host `host`. */
  | { type: 'snapshot'; host: number; topic: string; parts: string[] }
  /** Report and forget what was recorded so far. */
  | { type: 'collect' }
  | { type: 'count' }
  | { type: 'stop' };

/** Times are milliseconds of the system-wide monotonic clock (process.hrtime), comparable across processes. */
export interface Collected {
  /** ban key -> the time each of this worker's hosts got it (0: not received), in host order. */
  arrivals: Map<number, Float64Array>;
  /** ban key -> [written, acknowledged (0: not yet), the port of the instance that acknowledged it] for the bans this worker's hosts published. */
  sends: Map<number, [number, number, number]>;
  /** snapshot origin -> the time each host had every part of it (0: not yet). */
  snapshots: Map<string, Float64Array>;
  /** snapshot origin -> when its last part was acknowledged. */
  snapshotAcks: Map<string, number>;
  /**
   * Per host that lost its broker: when the connection closed, when the TCP connection and the
   * CONNACK of its last try came, when it was subscribed on another, and how many connections it tried.
   */
  failovers: Array<{ host: number; down: number; connected: number; connack: number; up: number; attempts: number }>;
  /** Host indexes, in the order of the arrays above. */
  hosts: number[];
  /** The worker's own event-loop delay since the last collect (ms): arrivals are stamped this late at worst. */
  loopDelayMs: { p99: number; max: number };
}

export type FromWorker =
  | { type: 'ready'; subscribed: number; failed: string[] }
  | { type: 'collected'; data: Collected }
  /** Deliveries received since the last collect (bans and snapshot parts), and hosts subscribed now. */
  | { type: 'count'; delivered: number; subscribed: number; snapshotsDone: number }
  | { type: 'stopped' };

export const now = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Ban keys are the last three octets of 11.x.y.z: a public address no agent refuses. */
export function banAddress(key: number): string {
  return `11.${(key >> 16) & 255}.${(key >> 8) & 255}.${key & 255}`;
}
