import { endpointUrl, type Endpoint } from '../../src/config.js';
import type { BrokerSecurity, RateLimit } from '../../src/config-security.js';
import type { Logger } from '../../src/log.js';
import { counted, counter, gauge, type PartStatus } from '../../src/status.js';
import { startBroker, type RunningBroker } from '../../broker/broker.js';
import { reloadKey, type Part } from '../../src/part.js';

/** Clients shown with their drops; the total counts every client. */
const CLIENTS_WITH_DROPS_SHOWN = 10;

/** Mesh: the Aedes broker this host's client publishes to and the peers subscribe to. The agent cannot run without it. */
export class EmbeddedBroker implements Part {
  private broker: RunningBroker | undefined;
  private readonly url: string;

  constructor(
    private readonly endpoint: Endpoint,
    tls: boolean,
    private readonly options: { log: Logger; security: BrokerSecurity; rateLimit: RateLimit },
  ) {
    this.url = endpointUrl(endpoint, tls);
    this.reloadKey = reloadKey('broker', { endpoint, tls, security: options.security, rateLimit: options.rateLimit });
  }

  readonly reloadKey: string;

  async start(): Promise<void> {
    this.broker = await startBroker({ host: this.endpoint.host, port: this.endpoint.port, ...this.options });
  }

  async stop(): Promise<void> {
    await this.broker?.close();
  }

  status(): PartStatus {
    const queues = this.broker?.queues() ?? { dropped: 0, droppedByClient: {} };
    return {
      kind: 'broker',
      problems: [],
      measures: {
        clients: gauge('MQTT clients connected to the embedded broker', this.broker?.aedes.connectedClients ?? 0),
        refused: counted('what the embedded broker refused (wrong password, bad certificate, impersonation, rate limit, oversized packet, persistent session, too many connections or subscriptions, full queue...), by reason', 'reason', this.broker?.refusals.byReason() ?? {}),
        dropped: counter('messages the embedded broker dropped because their subscriber does not read them fast enough (mq_max_queued_kib)', queues.dropped),
        dropped_by_client: counted(`dropped messages of the ${CLIENTS_WITH_DROPS_SHOWN} clients (account, or address when anonymous) with the most, by client`, 'client', mostDrops(queues.droppedByClient)),
      },
      details: { url: this.url },
    };
  }
}

function mostDrops(byClient: Record<string, number>): Record<string, number> {
  const entries = Object.entries(byClient).sort(([, a], [, b]) => b - a);
  return Object.fromEntries(entries.slice(0, CLIENTS_WITH_DROPS_SHOWN));
}
