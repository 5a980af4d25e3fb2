import type { ClusterConfig } from '../src/config-hub.js';
import type { BrokerSecurity, RateLimit } from '../src/config-security.js';
import type { Logger } from '../src/log.js';
import type { Part } from '../src/part.js';
import { MAX_CONTROL_CONNECTIONS } from '../src/reporting/control-server.js';
import { MAX_METRICS_CONNECTIONS } from '../src/reporting/metrics.js';
import type { Program } from '../src/reporting/reporter.js';
import { counted, counter, gauge, type PartStatus, type Problem } from '../src/status.js';
import { startBroker, type RunningBroker } from './broker.js';
import type { ClusterBus } from './cluster.js';
import { openFileLimit } from './file-limit.js';

/** Clients shown with their drops; the total counts every client. */
const CLIENTS_WITH_DROPS_SHOWN = 10;
/**
 * File descriptors kept for the program's own work beyond its listeners' caps: its links to
 * brokers, fail2ban's socket, OPNsense, Redis, the state files, Node itself.
 */
const KEPT_FREE = 1_024;

export interface BrokerPartOptions {
  /** Whose broker: the agent's embedded one, or syncfail2ban-broker. */
  program: Program;
  host: string;
  port: number;
  /** As clients reach it: mqtt://host:port or mqtts://... */
  url: string;
  log: Logger;
  security: BrokerSecurity;
  rateLimit: RateLimit;
  /** A clustered hub instance: its bus to the others through Redis, signed with the key. */
  cluster?: ClusterConfig & { key: string };
}

/**
 * The MQTT broker as a part: the agent's embedded broker (mesh) and syncfail2ban-broker
 * alike. The program cannot run without it: start() throws when the port cannot be had.
 * A clustered instance's Redis bus is its subpart.
 */
export class BrokerPart implements Part {
  private broker: RunningBroker | undefined;
  private bus: ClusterBus | undefined;
  private readonly problems: Problem[] = [];

  constructor(private readonly options: BrokerPartOptions) {}

  get subparts(): readonly Part[] {
    return this.bus ? [this.bus] : [];
  }

  async start(): Promise<void> {
    const { cluster, log, ...options } = this.options;
    this.checkFileLimit();
    if (cluster) {
      // Loaded only by clustered instances: agents and lone hubs never pay for the Redis client.
      const { ClusterBus } = await import('./cluster.js');
      this.bus = new ClusterBus({ ...cluster, log });
      await this.bus.start();
    }
    try {
      this.broker = await startBroker({ ...options, log, ...(this.bus ? { bus: this.bus } : {}) });
    } catch (error) {
      await this.bus?.stop();
      throw error;
    }
  }

  async stop(): Promise<void> {
    await this.broker?.close(); // closes the bus too: Aedes closes its mq
  }

  status(): PartStatus {
    const { broker } = this;
    const queues = broker?.queues() ?? { dropped: 0, droppedByClient: {} };
    const traffic = broker?.traffic() ?? { in: 0, out: 0 };
    return {
      kind: 'broker',
      problems: this.problems,
      measures: {
        clients: gauge('MQTT clients connected to the broker', broker?.aedes.connectedClients ?? 0),
        messages_in: counter("messages the broker's clients published that its rules let through", traffic.in),
        messages_out: counter("messages the broker wrote to its clients' subscriptions", traffic.out),
        refused: counted('what the broker refused (wrong password, bad certificate, impersonation, rate limit, oversized packet, persistent session, too many connections or subscriptions, full queue...), by reason', 'reason', broker?.refusals.byReason() ?? {}),
        dropped: counter('messages the broker dropped because their subscriber does not read them fast enough (mq_max_queued_kib)', queues.dropped),
        dropped_by_client: counted(`dropped messages of the ${CLIENTS_WITH_DROPS_SHOWN} clients (account, or address when anonymous) with the most, by client`, 'client', mostDrops(queues.droppedByClient)),
      },
      details: { url: this.options.url },
    };
  }

  /** The listeners' caps only keep descriptors free for the program's own work if the process may open that many. */
  private checkFileLimit(): void {
    const { program, security, log } = this.options;
    const limit = openFileLimit();
    const needed = security.limits.connections + MAX_METRICS_CONNECTIONS + MAX_CONTROL_CONNECTIONS + KEPT_FREE;
    if (limit === undefined || limit >= needed) return;
    const problem = {
      what: `mq_max_connections = ${security.limits.connections} with the control socket, metrics and the program's own work needs ${needed} file descriptors, but this process may open only ${limit}: a crowd of connections could starve the rest`,
      fix: `lower mq_max_connections to at most ${Math.max(1, limit - needed + security.limits.connections)}, or raise LimitNOFILE (systemctl edit ${program})`,
    };
    this.problems.push(problem);
    log.warn(`${problem.what}; fix: ${problem.fix}`);
  }
}

function mostDrops(byClient: Record<string, number>): Record<string, number> {
  const entries = Object.entries(byClient).sort(([, a], [, b]) => b - a);
  return Object.fromEntries(entries.slice(0, CLIENTS_WITH_DROPS_SHOWN));
}
