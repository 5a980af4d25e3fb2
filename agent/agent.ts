import { endpointUrl, meshTls, type Config } from '../src/config.js';
import { hubOrder } from '../src/config-hub.js';
import { Fail2banClient } from '../src/fail2ban/client.js';
import type { Logger } from '../src/log.js';
import { clientCredentials } from '../src/mqtt-credentials.js';
import { hostAddresses, NeverBanList } from '../src/never-ban.js';
import { shippedFile } from '../src/shipped-file.js';
import { RateLimiter } from '../src/rate-limit.js';
import { Refusals } from '../src/refusals.js';
import { startBroker, type RunningBroker } from '../broker/broker.js';
import { NODE_ID } from '../src/event.js';
import { OpnsenseBridge, type BridgeStatus } from './bridge/bridge.js';
import { BrokerLink, type LinkOptions, type LinkStatus } from './broker-link.js';
import { FailoverLink } from './failover-link.js';
import { FleetHostProtection } from './fleet-hosts.js';
import { FleetState, type FleetStatus } from './fleet/fleet-state.js';
import { ADOPTED, Holdings, MANUAL } from './fleet/holdings.js';
import { Projection } from './fleet/projection.js';
import { SyncJailReconciler, type SyncJailReconcile } from './fleet/sync-jail-reconciler.js';
import { Intake, type IntakeStats } from './intake.js';
import { Batcher, type SinkStats } from './sinks/batcher.js';
import { Fail2banBackend } from './sinks/fail2ban-backend.js';

export interface AgentStatus {
  nodeId: string;
  topology: 'mesh' | 'hub';
  embeddedBroker: string | null;
  links: LinkStatus[];
  intake: IntakeStats;
  refused: Record<string, number>;
  sinks: Record<string, SinkStats>;
  /** Who holds which ban (the fleet state), the last snapshot per origin. */
  fleet: FleetStatus;
  /** The last reconciliation of the sync jails, null before the first (or without f2b_sync). */
  syncJails: SyncJailReconcile | null;
  /** The OPNsense bridge, null when opn_fw_sync is off. */
  bridge: BridgeStatus | null;
}

/**
 * The service: one code path for both topologies, "subscribe to these brokers,
 * publish to that one". Mesh runs an embedded broker and subscribes to it and every
 * peer; hub subscribes to broker_url alone.
 */
export class Agent {
  private broker: RunningBroker | undefined;
  private links: Array<BrokerLink | FailoverLink> = [];
  private fail2ban: Fail2banClient | undefined;
  private readonly bridge: OpnsenseBridge | undefined;
  private readonly sinks = new Map<string, Batcher>();
  private readonly refusals: Refusals;
  private readonly fleet: FleetState;
  private readonly reconciler: SyncJailReconciler | undefined;
  private readonly intake: Intake;
  private readonly fleetHosts: FleetHostProtection;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
  ) {
    this.refusals = new Refusals(log);
    const holdings = new Holdings();
    const projections: Projection[] = [];
    let syncJails: Projection | undefined;
    if (config.f2bSync && config.jails.size > 0) {
      // A batch of 1,000 into a jail with a shell action takes fail2ban seconds (about 140 bans/s).
      this.fail2ban = new Fail2banClient(config.fail2banSocket, { timeoutMs: Math.max(config.connectionTimeoutS * 1000, 60_000) });
      const sink = new Batcher(new Fail2banBackend(this.fail2ban, log), log);
      this.sinks.set('fail2ban', sink);
      // This host's own bans are in its primary jails already.
      syncJails = new Projection('sync-jails', config.jails, config.nodeId, (action, target, address) => sink.submit({ target, action, address }));
      projections.push(syncJails);
    }
    if (config.opnsense.enabled) {
      this.bridge = new OpnsenseBridge(config.opnsense, config.stateDir, holdings, log);
      projections.push(this.bridge.projection);
    }
    this.fleet = new FleetState(holdings, config.stateDir, projections, log, config.snapshotTimeoutS * 1000);
    if (this.fail2ban && syncJails) {
      this.reconciler = new SyncJailReconciler(this.fail2ban, this.fleet, syncJails, log);
    }
    const neverBan = new NeverBanList(config.ignoreIp, hostAddresses(), config.minPrefix);
    this.fleetHosts = new FleetHostProtection(config, neverBan, log);
    this.intake = new Intake(neverBan, this.fleet, this.refusals, new RateLimiter(config.rateLimit));
  }

  get topology(): 'mesh' | 'hub' {
    return this.config.brokerUrls.length ? 'hub' : 'mesh';
  }

  async start(): Promise<void> {
    const { config, log } = this;
    log.info({ nodeId: config.nodeId, topology: this.topology, jails: Object.fromEntries(config.jails) }, 'starting syncfail2ban');
    if (this.topology === 'mesh') {
      this.broker = await startBroker({ host: config.mq.host, port: config.mq.port, log, security: config.broker, rateLimit: config.rateLimit });
    }
    // Before any link exists: no event may ban a host of the fleet, and the holdings (and what the bridge added) are loaded before events arrive.
    await this.fleetHosts.start();
    const loaded = this.fleet.load();
    await this.bridge?.start(loaded.fresh ? (origin, jail, address) => this.fleet.addAll(adoptedOrigin(origin), jail, [address]) : undefined);
    this.reconciler?.start(loaded.adoptionPending, () => this.fleet.adoptionDone());
    if (!this.reconciler && loaded.adoptionPending) this.fleet.adoptionDone();
    const { tls, ...account } = clientCredentials(config.mqtt);
    if (!config.mqtt.verifyTls) log.warn('mqtt_tls_verify = false: broker certificates are not verified; anyone on the path can read and forge events');
    const linkOptions: LinkOptions = {
      nodeId: config.nodeId,
      connectTimeoutS: config.connectionTimeoutS,
      log,
      onMessage: (topic, payload, source, retained) => this.intake.handle(topic, payload, source, retained),
      mqtt: { ...account, ...tls },
    };
    if (config.brokerUrls.length > 1) this.links.push(new FailoverLink(hubOrder(config.brokerUrls, config.nodeId), linkOptions));
    else this.links.push(...this.subscriptionUrls().map((url) => new BrokerLink(url, linkOptions)));
    // Not awaited: a hung fail2ban must not hold up start-up (the control socket comes next).
    if (this.fail2ban) void this.checkFail2ban(this.fail2ban);
    if (!this.reconciler && !this.bridge) {
      log.warn('nothing to apply events to: [jails] is empty (or f2b_sync = false) and the OPNsense bridge is off');
    }
  }

  /** Stops intake, flushes what was accepted (all sinks at once, until one deadline), closes connections. */
  async stop(deadlineMs = 10_000): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    await Promise.all(this.links.map((link) => link.close()));
    this.fleetHosts.stop();
    await this.reconciler?.stop();
    await Promise.all([
      ...[...this.sinks].map(async ([name, sink]) => {
        if (!(await sink.stop(deadlineMs))) {
          this.log.error({ sink: name, backlog: sink.stats().backlog }, 'stopped before every accepted change was applied');
        }
      }),
      this.bridge?.stop(deadlineMs),
    ]);
    this.fleet.close();
    await this.fail2ban?.close(Math.max(0, deadline - Date.now()));
    await this.broker?.close();
    this.refusals.close();
    this.log.info('stopped');
  }

  status(): AgentStatus {
    return {
      nodeId: this.config.nodeId,
      topology: this.topology,
      embeddedBroker: this.broker ? endpointUrl(this.config.mq, meshTls(this.config)) : null,
      links: this.links.map((link) => link.status()),
      intake: this.intake.stats(),
      refused: this.refusals.byReason(),
      sinks: Object.fromEntries([...this.sinks].map(([name, sink]) => [name, sink.stats()])),
      fleet: this.fleet.status(),
      syncJails: this.reconciler?.status() ?? null,
      bridge: this.bridge?.status() ?? null,
    };
  }

  private subscriptionUrls(): string[] {
    const { config } = this;
    if (config.brokerUrls.length) return config.brokerUrls;
    const tls = meshTls(config);
    const own = endpointUrl(config.mq, tls);
    const peers = config.syncServers.map((peer) => endpointUrl(peer, tls)).filter((url) => url !== own);
    return [own, ...new Set(peers)];
  }

  /** Says at start-up what is wrong on the fail2ban side; the sink keeps retrying either way. */
  private async checkFail2ban(client: Fail2banClient): Promise<void> {
    const { log, config } = this;
    try {
      await client.ping();
    } catch (error) {
      log.warn({ socket: config.fail2banSocket }, `fail2ban is not reachable: ${(error as Error).message}; events will be queued and retried`);
      return;
    }
    for (const syncJail of new Set(config.jails.values())) {
      if (!(await client.jailExists(syncJail).catch(() => true))) {
        log.warn({ jail: syncJail }, `sync jail ${syncJail} does not exist in fail2ban; add it to jail.local (see ${shippedFile('etc/fail2ban/jail.local')}) and reload fail2ban`);
      }
    }
  }
}

/** Holders from a bridge state file of an earlier version, as holdings: "@manual" stays manual, anything not a node id is adopted. */
function adoptedOrigin(origin: string): string {
  if (origin === MANUAL) return MANUAL;
  return NODE_ID.test(origin) ? origin : ADOPTED;
}
