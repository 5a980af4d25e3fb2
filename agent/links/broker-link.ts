import { randomBytes } from 'node:crypto';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { SUBSCRIPTION } from '../../src/event.js';
import { isSnapshotTopic } from '../../src/snapshot.js';
import type { Logger } from '../../src/log.js';
import { gauge, type PartStatus, type Problem } from '../../src/status.js';
import { reloadKey, type Part } from '../../src/part.js';

/** `refused`: connected, but the broker refused the subscription (its ACL): nothing arrives. */
export type LinkState = 'connecting' | 'connected' | 'refused' | 'down';

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

/** What makes two links the same link: everything but the callbacks and the logger. */
export function linkReloadKey(kind: string, urls: readonly string[], { nodeId, connectTimeoutS, mqtt, reconnectMs }: LinkOptions): string {
  return reloadKey(kind, { urls, nodeId, connectTimeoutS, mqtt, reconnectMs });
}

/**
 * One subscription to `f2b/+/+` on one broker. MQTT.js reconnects on its own; this
 * re-subscribes on every (clean-session) connect and logs state changes, not retries.
 * `connected` means subscribed: until the broker grants f2b/+/+, nothing arrives.
 */
export class BrokerLink implements Part {
  private client: MqttClient | undefined;
  private state: LinkState = 'connecting';
  private since = new Date();
  private lastError: string | null = null;
  private closing = false;

  constructor(
    readonly url: string,
    private readonly options: LinkOptions,
  ) {
    this.reloadKey = linkReloadKey('link', [url], options);
  }

  readonly reloadKey: string;

  async start(): Promise<void> {
    const { url, options } = this;
    const { log } = options;
    const client = connect(url, {
      clientId: `sf2b-${options.nodeId}-${randomBytes(4).toString('hex')}`,
      clean: true,
      keepalive: 30,
      connectTimeout: options.connectTimeoutS * 1000,
      reconnectPeriod: options.reconnectMs ?? RECONNECT_MS,
      resubscribe: false,
      ...options.mqtt,
    });
    this.client = client;
    turnAfterSnapshotParts(client);
    // A broker that delivers is alive: a message counts as an answer to the keepalive, so that
    // a ping's answer queued behind a burst (a snapshot storm) does not make the link give up on
    // a working broker and lose the parts still in flight; a silent broker still times out. Only
    // while this side speaks too (acknowledgements count for the broker's keepalive): a stream
    // of QoS 0 messages must not silence the pings the broker waits for.
    let lastSent = Date.now();
    client.on('packetsend', () => (lastSent = Date.now()));
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'publish' && Date.now() - lastSent < (client.options.keepalive ?? 0) * 500) client.reschedulePing(true);
    });
    client.on('connect', () => {
      client.subscribe(SUBSCRIPTION, { qos: 1 }, (error, granted) => {
        // An error on a connection that has ended is no refusal: the SUBACK never came, and 'close'
        // has the link reconnect. (MQTT.js reports a refusing SUBACK as an error too, on a live connection.)
        if (error && !client.connected) {
          log.debug({ broker: url, err: error.message }, `no answer to the subscription to ${SUBSCRIPTION}: the connection ended first`);
          return;
        }
        if (error || granted?.some((grant) => grant.qos === 128)) {
          this.lastError = `the broker refused the subscription to ${SUBSCRIPTION}${error ? ` (${error.message})` : ''}; allow this account to subscribe to it`;
          log.error({ broker: url }, this.lastError);
          this.setState('refused');
          return;
        }
        log.info({ broker: url }, `subscribed to ${SUBSCRIPTION}`);
        this.setState('connected');
        options.onSubscribed?.();
      });
    });
    client.on('close', () => {
      this.setState('down');
      if (!this.closing) options.onDown?.();
    });
    client.on('error', (error) => {
      if (error.message !== this.lastError) log.debug({ broker: url, err: error.message }, 'MQTT connection error');
      this.lastError = error.message;
    });
    client.on('message', (topic, payload, packet) => options.onMessage(topic, payload, url, packet.retain));
  }

  status(): PartStatus {
    const since = this.since.toISOString();
    const problems: Problem[] = [];
    if (this.state !== 'connected') {
      problems.push({
        what: `${this.state} since ${since}${this.lastError ? ` (${this.lastError})` : ''}`,
        fix:
          this.state === 'refused'
            ? 'allow this account to subscribe to f2b/+/+ on that broker'
            : 'check that the broker runs and that this host reaches it (sync_servers or broker_url, the firewall, the credentials)',
      });
    }
    return {
      kind: 'link',
      name: this.url,
      problems,
      measures: { connected: gauge('1 while subscribed on this broker', this.state === 'connected' ? 1 : 0) },
      details: { state: this.state, since: { time: since }, last_error: this.lastError },
    };
  }

  async stop(): Promise<void> {
    this.closing = true;
    await this.client?.endAsync(true);
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  /** Publishes with QoS 1; resolves once the broker acknowledged it. Refused at once while not connected (nothing is queued here). */
  publish(topic: string, payload: string): Promise<void> {
    const { client } = this;
    if (!client || this.state !== 'connected' || !client.connected) return Promise.reject(new Error(`not connected to ${this.url}`));
    return new Promise((resolve, reject) => client.publish(topic, payload, { qos: 1 }, (error) => (error ? reject(error) : resolve())));
  }

  private setState(state: LinkState): void {
    if (state === this.state || this.closing) return;
    const { log, reconnectMs = RECONNECT_MS } = this.options;
    const retrying = reconnectMs ? `; retrying every ${reconnectMs / 1000} s` : '';
    if (state === 'connected') log.info({ broker: this.url }, 'connected to broker');
    else if (state === 'down' && this.state === 'connected') log.warn({ broker: this.url, err: this.lastError }, `lost the broker${retrying}`);
    // Without retries of its own, the owner (a FailoverLink) tells when no instance answers.
    else if (state === 'down' && this.state === 'connecting') log[reconnectMs ? 'warn' : 'debug']({ broker: this.url, err: this.lastError }, `cannot reach the broker yet${retrying}`);
    this.state = state;
    this.since = new Date();
  }
}

/**
 * After each snapshot part the event loop turns before the client takes the next message (and
 * acknowledges the part, as it acknowledges every message once its handler ran). A part takes
 * the agent tens of milliseconds, and a burst of parts read at once would otherwise be taken
 * in one go: the sinks would start on the first parts only after the last, and status would
 * not answer meanwhile.
 */
export function turnAfterSnapshotParts(client: MqttClient): void {
  client.handleMessage = (packet, callback) => (packet.cmd === 'publish' && isSnapshotTopic(packet.topic) ? setImmediate(callback) : callback());
}
