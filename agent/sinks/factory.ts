import type { Config } from '../../src/config.js';
import type { Logger } from '../../src/log.js';
import type { Part } from '../../src/part.js';
import type { Adoption } from '../fleet/adoption.js';
import type { Holdings } from '../fleet/holdings.js';
import { DryRunBackend } from './dry-run.js';
import { SyncJailsSink } from './fail2ban/sync-jails.js';
import { NftablesSink } from './nftables/nftables-sink.js';
import { OpnsenseBridge } from './opnsense/bridge.js';
import type { PickBackend, Sink } from './sink.js';

/** What the sinks share: the holdings they project, the upgrade adoption, the log. */
export interface SinkContext {
  holdings: Holdings;
  adoption: Adoption;
  log: Logger;
}

export interface Sinks {
  /** Every sink the config turns on, fed by the fleet state. */
  sinks: Sink[];
  /** What keeps the sinks' own state in state_dir (the OPNsense bridge's): started before the sinks, stopped after them. */
  keepers: Part[];
}

/**
 * Every sink the config turns on: the OPNsense aliases, one sink per firewall, and the
 * fail2ban sync jails. Under dry_run (or --dry-run) every sink writes through the dry-run
 * backend, which logs what it would apply: chosen here, once, for all of them.
 */
export function buildSinks(config: Config, { holdings, adoption, log }: SinkContext): Sinks {
  const pick: PickBackend = config.dryRun ? (real) => new DryRunBackend(real.name, log) : (real) => real;
  const sinks: Sink[] = [];
  const keepers: Part[] = [];
  if (config.opnsense.enabled) {
    const bridge = new OpnsenseBridge(config.opnsense, config.stateDir, holdings, log, { pick, adoption, stateReadOnly: config.dryRun });
    keepers.push(bridge);
    sinks.push(...bridge.firewalls);
  }
  if (config.f2bSync && config.jails.size > 0) {
    sinks.push(
      new SyncJailsSink({
        socket: config.fail2banSocket,
        jails: config.jails,
        nodeId: config.nodeId,
        // A batch of 1,000 into a jail with a shell action takes fail2ban seconds (about 140 bans/s).
        timeoutMs: Math.max(config.connectionTimeoutS * 1000, 60_000),
        holdings,
        adoption,
        pick,
        log,
      }),
    );
  }
  if (config.nftables.enabled) sinks.push(new NftablesSink({ config: config.nftables, nodeId: config.nodeId, holdings, pick, log }));
  return { sinks, keepers };
}
