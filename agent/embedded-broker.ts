import { endpointUrl, type Endpoint } from '../src/config.js';
import type { BrokerSecurity, RateLimit } from '../src/config-security.js';
import type { Logger } from '../src/log.js';
import { counted, gauge, type PartStatus } from '../src/status.js';
import { startBroker, type RunningBroker } from '../broker/broker.js';
import type { Part } from './part.js';

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
  }

  async start(): Promise<void> {
    this.broker = await startBroker({ host: this.endpoint.host, port: this.endpoint.port, ...this.options });
  }

  async stop(): Promise<void> {
    await this.broker?.close();
  }

  status(): PartStatus {
    return {
      kind: 'broker',
      problems: [],
      measures: {
        clients: gauge('MQTT clients connected to the embedded broker', this.broker?.aedes.connectedClients ?? 0),
        refused: counted('what the embedded broker refused (wrong password, impersonation, rate limit, oversized packet...), by reason', 'reason', this.broker?.refusals.byReason() ?? {}),
      },
      details: { url: this.url },
    };
  }
}
