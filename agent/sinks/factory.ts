import type { Config } from '../../src/config.js';
import type { Logger } from '../../src/log.js';
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

/**
 * Every sink the config turns on. Under dry_run (or --dry-run) every sink writes through
 * the dry-run backend, which logs what it would apply: chosen here, once, for all of them.
 */
export function buildSinks(config: Config, { holdings, adoption, log }: SinkContext): Sink[] {
  const pick: PickBackend = config.dryRun ? (real) => new DryRunBackend(real.name, log) : (real) => real;
  const sinks: Sink[] = [];
  if (config.opnsense.enabled) sinks.push(new OpnsenseBridge(config.opnsense, config.stateDir, holdings, log, { pick, adoption, stateReadOnly: config.dryRun }));
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
  return sinks;
}
