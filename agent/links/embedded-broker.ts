import { endpointUrl, type Endpoint } from '../../src/config.js';
import type { BrokerSecurity, RateLimit } from '../../src/config-security.js';
import type { Logger } from '../../src/log.js';
import { reloadKey } from '../../src/part.js';
import { BrokerPart } from '../../broker/broker-part.js';

/** Mesh: the Aedes broker this host's client publishes to and the peers subscribe to. The agent cannot run without it. */
export class EmbeddedBroker extends BrokerPart {
  readonly reloadKey: string;

  constructor(endpoint: Endpoint, tls: boolean, options: { log: Logger; security: BrokerSecurity; rateLimit: RateLimit }) {
    super({ program: 'syncfail2ban', host: endpoint.host, port: endpoint.port, url: endpointUrl(endpoint, tls), ...options });
    this.reloadKey = reloadKey('broker', { endpoint, tls, security: options.security, rateLimit: options.rateLimit });
  }
}
