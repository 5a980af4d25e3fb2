import type { Logger } from '../log.js';
import type { FleetView, OwnSnapshot } from '../control-protocol.js';
import type { AgentStatus } from '../status.js';

/** The programs that report over a control socket and /metrics; each one's systemd unit has its name. */
export type Program = 'syncfail2ban' | 'syncfail2ban-broker';

/** What the control socket and the metrics endpoint serve, and for whom. */
export interface Reporter {
  program: Program;
  /** A reporting key as written in config.cfg, for fixes: `metrics_port`, or `[broker] metrics_port` for the broker. */
  key(name: string): string;
  status(): AgentStatus;
  /** The agent's view of the fleet (the control socket's `fleet`); absent for the broker. */
  fleet?(): FleetView;
  /** This host's own snapshots as the agent received them back (the control socket's `snapshots`); absent for the broker. */
  ownSnapshots?(): OwnSnapshot[];
  /** The status after a fresh look (`Part.refresh`), for a status request; `status()` where absent. */
  freshStatus?(): Promise<AgentStatus>;
  log: Logger;
}

/** The command that prints a program's status. */
export function statusCommand(program: Program): string {
  return program === 'syncfail2ban' ? 'syncfail2ban-client status' : `${program} status`;
}
