import { counter, type PartStatus } from '../../src/status.js';
import { BrokerLink, linkReloadKey, type LinkOptions } from './broker-link.js';
import type { Part } from '../../src/part.js';

/** Pause before the next attempt when an instance could not even be reached. */
const RETRY_MS = 1_000;

/**
 * One subscription to a clustered hub: subscribed through one instance at a time. When it
 * is lost (closed, or silent for a keepalive, both within connection_timeout), the next
 * instance is tried at once. While on another than the preferred instance, a second link
 * keeps trying the preferred one and takes over once it has subscribed there (the old one
 * closes only then, so nothing is missed meanwhile; events seen on both are idempotent).
 */
export class FailoverLink implements Part {
  private active: BrokerLink;
  private position = 0;
  private returning: BrokerLink | undefined;
  private retry: NodeJS.Timeout | undefined;
  private failovers = 0;
  private closing = false;
  /** Set once every instance failed in a row, until one answers. */
  private unreachable = false;

  constructor(
    private readonly urls: readonly string[],
    private readonly options: LinkOptions,
  ) {
    this.reloadKey = linkReloadKey('failover-link', urls, options);
    this.active = this.open(0);
  }

  readonly reloadKey: string;

  async start(): Promise<void> {
    void this.active.start();
  }

  /** The active instance's link, named for the whole hub, with where it is and how often it failed over; being failed over is healthy. */
  status(): PartStatus {
    const link = this.active.status();
    return {
      ...link,
      name: this.urls.join(' '),
      measures: { ...link.measures, failovers: counter('how often the link left a hub instance it was subscribed on', this.failovers) },
      details: { instance: this.active.url, ...link.details, preferred: this.urls[0]!, instances: this.urls.join(' ') },
    };
  }

  get connected(): boolean {
    return this.active.connected;
  }

  /** The instance in use now. */
  get url(): string {
    return this.active.url;
  }

  /** Publishes through the instance subscribed on now. */
  publish(topic: string, payload: string): Promise<void> {
    return this.active.publish(topic, payload);
  }

  async stop(): Promise<void> {
    this.closing = true;
    clearTimeout(this.retry);
    await Promise.all([this.active.stop(), this.returning?.stop()]);
  }

  private open(position: number): BrokerLink {
    this.position = position;
    if (position === 0) this.stopReturning();
    let subscribed = false;
    const link = this.link(this.urls[position]!, 0, () => {
      subscribed = true;
      this.unreachable = false;
      if (this.position !== 0) this.startReturning();
    }, () => this.moveOn(link, subscribed));
    return link;
  }

  private moveOn(link: BrokerLink, wasSubscribed: boolean): void {
    if (this.closing || link !== this.active) return;
    void link.stop();
    const next = (this.position + 1) % this.urls.length;
    if (wasSubscribed) {
      this.failovers += 1;
      this.options.log.warn({ broker: link.url, next: this.urls[next] }, 'lost the hub instance; moving to the next one');
    } else if (next === 0 && !this.unreachable) {
      this.unreachable = true;
      this.options.log.warn({ brokers: this.urls, err: link.status().details.last_error }, 'no hub instance answers; trying each in turn every second');
    }
    // Straight on after a loss; a pause between instances that cannot be reached at all.
    this.retry = setTimeout(() => {
      this.active = this.open(next);
      void this.active.start();
    }, wasSubscribed ? 0 : RETRY_MS);
  }

  private startReturning(): void {
    if (this.returning) return;
    const url = this.urls[0]!;
    const probe = this.link(url, this.options.connectTimeoutS * 1000, () => {
      if (this.closing || probe !== this.returning) return;
      const old = this.active;
      this.returning = undefined;
      this.active = probe;
      this.position = 0;
      this.options.log.info({ broker: url, from: old.url }, 'back on the preferred hub instance');
      void old.stop();
    }, () => {
      if (probe === this.active) this.moveOn(probe, true);
    });
    void probe.start();
    this.returning = probe;
  }

  private stopReturning(): void {
    void this.returning?.stop();
    this.returning = undefined;
  }

  private link(url: string, reconnectMs: number, onSubscribed: () => void, onDown: () => void): BrokerLink {
    // A keepalive of half the timeout notices a silent instance within connection_timeout.
    const keepalive = Math.max(1, Math.ceil(this.options.connectTimeoutS / 2));
    return new BrokerLink(url, { ...this.options, mqtt: { ...this.options.mqtt, keepalive }, reconnectMs, onSubscribed, onDown });
  }
}
