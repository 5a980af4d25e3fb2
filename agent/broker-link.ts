import { randomBytes } from 'node:crypto';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { SUBSCRIPTION } from '../src/event.js';
import type { Logger } from '../src/log.js';

/** `refused`: connected, but the broker refused the subscription (its ACL): nothing arrives. */
export type LinkState = 'connecting' | 'connected' | 'refused' | 'down';

export interface LinkStatus {
  url: string;
  state: LinkState;
  since: string;
  lastError: string | null;
  /** A clustered hub's link (failover-link.ts): the instances in this host's order, the first preferred. */
  instances?: string[];
  preferred?: string;
  failovers?: number;
}

export interface LinkOptions {
  nodeId: string;
  connectTimeoutS: number;
  log: Logger;
  onMessage(topic: string, payload: Buffer, source: string, retained: boolean): void;
  /** Extra MQTT client options (credentials, TLS) for this broker. */
  mqtt?: IClientOptions;
  /** Milliseconds between reconnection attempts; 0: none, the owner (a FailoverLink) moves on instead. */
  reconnectMs?: number;
  /** Called once the broker granted the subscription: events flow from now on. */
  onSubscribed?(): void;
  /** Called when the connection is lost or could not be made. */
  onDown?(): void;
}

const RECONNECT_MS = 1_000;

/**
 * One subscription to `f2b/+/+` on one broker. MQTT.js reconnects on its own; this
 * re-subscribes on every (clean-session) connect and logs state changes, not retries.
 */
export class BrokerLink {
  readonly client: MqttClient;
  private state: LinkState = 'connecting';
  private since = new Date();
  private lastError: string | null = null;
  private closing = false;

  constructor(
    readonly url: string,
    private readonly options: LinkOptions,
  ) {
    const { log } = options;
    const reconnectMs = options.reconnectMs ?? RECONNECT_MS;
    this.client = connect(url, {
      clientId: `sf2b-${options.nodeId}-${randomBytes(4).toString('hex')}`,
      clean: true,
      keepalive: 30,
      connectTimeout: options.connectTimeoutS * 1000,
      reconnectPeriod: reconnectMs,
      resubscribe: false,
      ...options.mqtt,
    });
    this.client.on('connect', () => {
      this.client.subscribe(SUBSCRIPTION, { qos: 1 }, (error, granted) => {
        if (error || granted?.some((grant) => grant.qos === 128)) {
          this.lastError = `the broker refused the subscription to ${SUBSCRIPTION}${error ? ` (${error.message})` : ''}; allow this account to subscribe to it`;
          log.error({ broker: url }, this.lastError);
          this.state = 'refused';
          this.since = new Date();
          return;
        }
        log.info({ broker: url }, `subscribed to ${SUBSCRIPTION}`);
        options.onSubscribed?.();
      });
      this.setState('connected');
    });
    this.client.on('close', () => {
      this.setState('down');
      if (!this.closing) options.onDown?.();
    });
    this.client.on('error', (error) => {
      if (error.message !== this.lastError) log.debug({ broker: url, err: error.message }, 'MQTT connection error');
      this.lastError = error.message;
    });
    this.client.on('message', (topic, payload, packet) => options.onMessage(topic, payload, url, packet.retain));
  }

  status(): LinkStatus {
    return { url: this.url, state: this.state, since: this.since.toISOString(), lastError: this.lastError };
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.client.endAsync(true);
  }

  private setState(state: LinkState): void {
    if (state === this.state || this.closing) return;
    const { log, reconnectMs = RECONNECT_MS } = this.options;
    const retrying = reconnectMs ? `; retrying every ${reconnectMs / 1000} s` : '';
    if (state === 'connected') log.info({ broker: this.url }, 'connected to broker');
    else if (this.state === 'connected') log.warn({ broker: this.url, err: this.lastError }, `lost the broker${retrying}`);
    // Without retries of its own, the owner (a FailoverLink) tells when no instance answers.
    else if (this.state === 'connecting') log[reconnectMs ? 'warn' : 'debug']({ broker: this.url, err: this.lastError }, `cannot reach the broker yet${retrying}`);
    this.state = state;
    this.since = new Date();
  }
}
