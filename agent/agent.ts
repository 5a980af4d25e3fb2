import { endpointUrl, peerUrls, type Config } from '../src/config.js';
import { hubOrder } from '../src/config-hub.js';
import type { Logger } from '../src/log.js';
import { hostAddresses, NeverBanList } from '../src/never-ban.js';
import { RateLimiter } from '../src/rate-limit.js';
import { Refusals } from '../src/refusals.js';
import type { AgentStatus } from '../src/status.js';
import { BrokerLink, type LinkOptions } from './links/broker-link.js';
import { ControlServer } from '../src/reporting/control-server.js';
import { EmbeddedBroker } from './links/embedded-broker.js';
import { FailoverLink } from './links/failover-link.js';
import { FleetHostProtection } from './intake/fleet-hosts.js';
import { HeapTrim } from './memory/heap-trim.js';
import type { Inbox } from './links/inbox.js';
import { Adoption } from './fleet/adoption.js';
import { agentClock, TEST_CLOCK_OFFSET_VARIABLE } from './fleet/clock.js';
import { FleetPart } from './fleet/fleet-part.js';
import { FleetState } from './fleet/fleet-state.js';
import { fleetView } from './fleet/fleet-view.js';
import { Holdings } from './fleet/holdings.js';
import { Intake } from './intake/intake.js';
import { MetricsServer } from '../src/reporting/metrics.js';
import type { Reporter } from '../src/reporting/reporter.js';
import { allParts, type Part } from '../src/part.js';
import { buildSinks } from './sinks/factory.js';
import { ActionSocket } from './publishing/action-socket.js';
import { Outbox } from './publishing/outbox.js';
import { Publisher } from './publishing/publisher.js';
import { StateDirLock } from './state-dir/lock.js';
import { waitAtMost } from '../src/wait-at-most.js';

/** How long a status request waits for the parts' fresh look (fail2ban answering, say) before it answers with what it has. */
const FRESH_LOOK_MS = 2_000;

/**
 * The service: one code path for both topologies, "subscribe to these brokers, publish to
 * that one". Mesh runs an embedded broker and subscribes to it and every peer; hub
 * subscribes to broker_url alone. Every piece is a Part (src/part.ts), started in order,
 * stopped in reverse, and reported in one list. Parts come in stages: those of one stage
 * (the sinks, the links) stop together. At a reload, the next agent takes over the running
 * parts it would build the same (Part.reloadKey: the embedded broker, the links), so that the
 * broker keeps serving and no message is missed; the links deliver through one Inbox that
 * holds what arrives while no intake runs.
 */
export class Agent {
  private readonly stages: Part[][] = [];
  private started = new Set<Part>();

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    inbox: Inbox,
  ) {
    // Before anything else: one agent per state_dir. A dry run writes nothing there, so it takes no lock.
    if (!config.dryRun) this.stages.push([new StateDirLock(config.stateDir, log)]);
    if (this.topology === 'mesh') {
      this.stages.push([new EmbeddedBroker(config.mq, config.meshTls, { log, security: config.broker, rateLimit: config.rateLimit })]);
    }
    // The holdings store first: the sinks project it, and it is loaded before events arrive.
    const holdings = new Holdings(config.holdingLimits);
    const adoption = new Adoption(config.stateDir, config.dryRun);
    const { sinks, keepers } = buildSinks(config, { holdings, adoption, log });
    const { clock, offsetS } = agentClock();
    if (offsetS !== 0) log.warn({ offsetS }, `${TEST_CLOCK_OFFSET_VARIABLE} shifts this agent's clock by ${offsetS} s: for tests only`);
    const fleet = new FleetState(holdings, config.stateDir, sinks, log, { snapshotDeadlineMs: config.snapshotTimeoutS * 1000, nodeId: config.nodeId, readOnly: config.dryRun, clock });
    this.stages.push([new FleetPart(fleet, adoption), ...keepers], sinks);
    const neverBan = new NeverBanList(config.ignoreIp, hostAddresses(), config.minPrefix);
    // Before any link: no event may ban a host of the fleet.
    this.stages.push([new FleetHostProtection(config, neverBan, log)]);
    const intake = new Intake(neverBan, fleet, new Refusals(log), new RateLimiter(config.rateLimit), inbox);
    this.stages.push([intake]);
    const { tls, ...account } = config.mqtt;
    const linkOptions: LinkOptions = {
      nodeId: config.nodeId,
      connectTimeoutS: config.connectionTimeoutS,
      log,
      onMessage: inbox.deliver,
      mqtt: { ...account, ...tls },
    };
    const links: Array<BrokerLink | FailoverLink> =
      config.brokerUrls.length > 1 ? [new FailoverLink(hubOrder(config.brokerUrls, config.nodeId), linkOptions)] : this.subscriptionUrls().map((url) => new BrokerLink(url, linkOptions));
    this.stages.push(links);
    // This host's one publisher: on the link to its embedded broker (mesh, the first link) or to
    // the hub. Read at each use: a reload may put the running agent's link in its place.
    const outbox = new Outbox(config.stateDir, log, { readOnly: config.dryRun });
    const publisher = new Publisher(outbox, () => links[0]!, { nodeId: config.nodeId, log, rateLimit: config.rateLimit, timeoutMs: config.connectionTimeoutS * 1000 });
    this.stages.push([publisher], [new ActionSocket(config.actionSocket, new Set(config.jails.values()), neverBan, outbox, publisher.kick, log)]);
    const reporter: Reporter = {
      program: 'syncfail2ban',
      key: (name) => name,
      status: () => this.status(),
      freshStatus: () => this.freshStatus(),
      fleet: () => fleetView(config.nodeId, holdings, intake.lastEvents()),
      ownSnapshots: () => fleet.ownSnapshots().map(({ jail, id, complete, partsReceived }) => ({ jail, id, complete, partsReceived })),
      log,
    };
    const reporters: Part[] = [new ControlServer(config.controlSocket, reporter), new HeapTrim(() => this.status(), log)];
    if (config.metrics) reporters.push(new MetricsServer(config.metrics, reporter));
    this.stages.push(reporters);
    if (sinks.length === 0) {
      log.warn('nothing to apply events to: [jails] is empty (or f2b_sync = false), and the OPNsense bridge and nft_sync are off');
    }
  }

  get topology(): 'mesh' | 'hub' {
    return this.config.brokerUrls.length ? 'hub' : 'mesh';
  }

  /**
   * Before a reload: takes over each running part of `previous` that this agent would build
   * the same (equal reloadKey). It keeps running, now as this agent's, and `previous` no
   * longer stops it.
   */
  takeOver(previous: Agent): void {
    const running = new Map([...previous.started].flatMap((part) => (part.reloadKey === undefined ? [] : [[part.reloadKey, part] as const])));
    for (const stage of this.stages) {
      stage.forEach((part, index) => {
        const same = part.reloadKey === undefined ? undefined : running.get(part.reloadKey);
        if (!same) return;
        stage[index] = same;
        previous.started.delete(same);
        this.started.add(same);
      });
    }
  }

  /** Starts every part in order (but those taken over, which run); when one cannot start, stops those started and throws. */
  async start(): Promise<void> {
    const { config, log } = this;
    log.info({ nodeId: config.nodeId, topology: this.topology, jails: Object.fromEntries(config.jails), dryRun: config.dryRun }, 'starting syncfail2ban');
    if (config.dryRun) log.warn('dry run: received bans are logged, not applied to fail2ban or OPNsense');
    if (!config.mqtt.tls.rejectUnauthorized) log.warn('mqtt_tls_verify = false: broker certificates are not verified; anyone on the path can read and forge events');
    for (const part of this.stages.flat()) {
      if (this.started.has(part)) continue;
      this.started.add(part);
      try {
        await part.start();
      } catch (error) {
        await this.stop();
        throw error;
      }
    }
  }

  /**
   * Stops the started parts stage by stage in reverse order (the links, then intake, then
   * every sink flushes what was accepted at once), all until one deadline.
   */
  async stop(deadlineMs = 10_000): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    const remaining = () => Math.max(0, deadline - Date.now());
    const started = this.started;
    this.started = new Set();
    for (const stage of [...this.stages].reverse()) {
      await Promise.all(stage.filter((part) => started.has(part)).map((part) => part.stop(remaining())));
    }
    this.log.info('stopped');
  }

  /** The status after every part that can took a fresh look (waiting at most FRESH_LOOK_MS): what `syncfail2ban-client status` shows. */
  async freshStatus(): Promise<AgentStatus> {
    const looks = allParts(this.stages.flat()).map((part) => part.refresh?.());
    await waitAtMost(Promise.all(looks), FRESH_LOOK_MS);
    return this.status();
  }

  status(): AgentStatus {
    return {
      nodeId: this.config.nodeId,
      topology: this.topology,
      dryRun: this.config.dryRun,
      parts: allParts(this.stages.flat()).map((part) => part.status()),
    };
  }

  private subscriptionUrls(): string[] {
    const { config } = this;
    return config.brokerUrls.length ? config.brokerUrls : [endpointUrl(config.mq, config.meshTls), ...peerUrls(config)];
  }
}

