import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import mqemitter, { type Message, type MQEmitter } from 'mqemitter';
import type { ClusterConfig } from '../src/config-hub.js';
import { TOPIC_ROOT } from '../src/event.js';
import type { Logger } from '../src/log.js';
import type { Part } from '../src/part.js';
import { Refusals } from '../src/refusals.js';
import { counted, counter, gauge, type PartStatus, type Problem } from '../src/status.js';
import { waitAtMost } from '../src/wait-at-most.js';
import { openFrame, sealFrame } from './bus-frame.js';

export interface ClusterOptions extends ClusterConfig {
  key: string;
  log: Logger;
}

/** `up`: both Redis connections (publish, subscribe) are ready, so events cross instances. */
type ClusterState = 'connecting' | 'up' | 'down';

type Listener = (message: Message, done: () => void) => void;

/** The one Redis channel the instances share. */
export const BUS_CHANNEL = 'syncfail2ban-bus';
/**
 * How far a message's time may be from this instance's clock: the instances' clocks must
 * agree this well (NTP does far better). A replay of a message this instance never saw, e.g.
 * one sent just before it started, passes only within this window.
 */
export const MAX_CLOCK_SKEW_MS = 30_000;
/** How long a refusal that means "events do not cross" (clock, key) keeps the part unhealthy. */
const PROBLEM_SHOWN_MS = 10 * 60_000;
/** How long a client's publish waits for Redis to take it before it is acknowledged all the same (sendAhead). */
const SEND_AHEAD_WAIT_MS = 2_000;

/**
 * The message bus of one clustered broker instance, given to Aedes as its `mq`. Local
 * delivery never depends on Redis: every message goes to this instance's subscribers
 * (a client's QoS 1 publish once Redis took it, or SEND_AHEAD_WAIT_MS passed: sendAhead),
 * and the fleet's events (f2b/...) go to the other instances through one Redis pub/sub
 * channel when Redis is up. What crosses is signed with cluster_key (bus-frame.ts)
 * and checked before delivery: a message not signed with it, one this instance has seen
 * (replayed) and one too old for the clocks are refused and counted, so access to Redis
 * alone forges nothing. Aedes' own $SYS announcements stay on their instance: client ids
 * never show in Redis, and nothing from Redis can close a client. A message that comes back
 * with this instance's id is its own echo and is dropped, so every subscriber gets each
 * message once. Redis only relays: nothing is stored there, and a message published while
 * Redis is down is not queued (counted as not sent; the origin's `-f` heals the gap).
 */
export class ClusterBus implements Part {
  /** Aedes stamps this on every packet it publishes (its `id` option). */
  readonly brokerId = randomUUID();
  private readonly local: MQEmitter = mqemitter({ concurrency: 100, matchEmptyLevels: true });
  private readonly refusals: Refusals;
  private readonly shownUrl: string;
  private publisher: Redis | undefined;
  private subscriber: Redis | undefined;
  private state: ClusterState = 'connecting';
  private since = new Date();
  private lastError: string | null = null;
  private closed: Promise<void> | undefined;
  private seq = 0;
  /** Per sender: the last sequence number taken and when (this clock). */
  private readonly seen = new Map<string, { seq: number; at: number }>();
  private readonly counts = { sent: 0, notSent: 0, received: 0 };
  /** Payloads of client publishes already sent to Redis by sendAhead: emit() delivers them on this instance only. */
  private readonly sentAhead = new WeakSet<Buffer>();
  private lastUnsigned: number | undefined;
  private lastStale: { at: number; skewMs: number } | undefined;

  constructor(private readonly options: ClusterOptions) {
    this.shownUrl = withoutPassword(options.redisUrl);
    this.refusals = new Refusals(options.log.child({ component: 'cluster' }));
  }

  /** Opens the two Redis connections and resolves at once: the broker serves its own clients whether Redis is there or not. */
  async start(): Promise<void> {
    const { options } = this;
    const tls = options.redisCa ? { tls: { ca: options.redisCa } } : {};
    // ioredis reconnects on its own (every 50 ms growing to 2 s) and re-subscribes.
    // The publisher queues nothing while Redis is away: memory stays bounded. It sends what
    // one event-loop turn publishes in one write (auto-pipelining), as mqemitter-redis did.
    const publisher = new Redis(options.redisUrl, { ...tls, enableOfflineQueue: false, enableAutoPipelining: true, connectionName: 'syncfail2ban-broker' });
    // The subscriber's only command is the subscription: it waits for Redis however long it takes.
    const subscriber = new Redis(options.redisUrl, { ...tls, maxRetriesPerRequest: null, connectionName: 'syncfail2ban-broker' });
    for (const connection of [publisher, subscriber]) {
      connection.on('ready', () => this.update());
      connection.on('close', () => this.update());
      connection.on('error', (error: Error) => {
        this.lastError = error.message;
        this.update();
      });
    }
    subscriber.on('messageBuffer', (_channel: Buffer, frame: Buffer) => this.receive(frame));
    subscriber.subscribe(BUS_CHANNEL).catch(() => undefined); // rejected only when closing
    this.publisher = publisher;
    this.subscriber = subscriber;
  }

  /** Aedes closes the bus when it closes; this is for a broker that never got that far. */
  stop(): Promise<void> {
    return new Promise((resolve) => this.close(resolve));
  }

  status(): PartStatus {
    const problems: Problem[] = [];
    const now = Date.now();
    if (this.state !== 'up') {
      problems.push({
        what: `Redis at ${this.shownUrl} is ${this.state === 'connecting' ? 'not connected yet' : `unreachable${this.lastError ? ` (${this.lastError})` : ''}`}: events do not cross to the other instances`,
        fix: 'start Redis, or correct cluster_redis_url (host, port, password, rediss:// and cluster_redis_ca_file for TLS)',
      });
    }
    if (this.lastUnsigned !== undefined && now - this.lastUnsigned < PROBLEM_SHOWN_MS) {
      problems.push({
        what: `messages on the bus not signed with this instance's cluster_key were refused, the last at ${new Date(this.lastUnsigned).toISOString()}: an instance with another cluster_key, or someone who can publish into Redis`,
        fix: 'give every instance of the hub the same cluster_key, and let only the instances reach Redis (requirepass or an ACL user, a firewall)',
      });
    }
    if (this.lastStale !== undefined && now - this.lastStale.at < PROBLEM_SHOWN_MS) {
      problems.push({
        what: `messages from another instance were refused as ${Math.round(this.lastStale.skewMs / 1000)} s away from this clock (more than ${MAX_CLOCK_SKEW_MS / 1000} s), the last at ${new Date(this.lastStale.at).toISOString()}`,
        fix: "synchronise the instances' clocks (timedatectl status; an NTP client such as chrony or systemd-timesyncd)",
      });
    }
    return {
      kind: 'cluster',
      problems,
      measures: {
        up: gauge('1 while both connections to Redis are ready, so events cross to the other instances', this.state === 'up' ? 1 : 0),
        sent: counter('messages sent to the other instances through Redis', this.counts.sent),
        not_sent: counter('messages that did not go to the other instances because Redis was unreachable', this.counts.notSent),
        received: counter('messages from the other instances delivered to this instance\'s clients', this.counts.received),
        refused: counted('messages from Redis refused (not signed with cluster_key, replayed, too old, malformed), by reason', 'reason', this.refusals.byReason()),
      },
      details: { redis: this.shownUrl, state: this.state, since: { time: this.since.toISOString() } },
    };
  }

  on(topic: string, listener: Listener, done?: () => void): this {
    this.local.on(topic, listener, done);
    return this;
  }

  removeListener(topic: string, listener: Listener, done?: () => void): void {
    this.local.removeListener(topic, listener, done);
  }

  emit(message: Message, done?: (error?: Error) => void): void {
    this.local.emit(message, done);
    if (typeof message.topic !== 'string' || !message.topic.startsWith(`${TOPIC_ROOT}/`)) return;
    const payload = Buffer.isBuffer(message.payload) ? message.payload : Buffer.from(String(message.payload ?? ''));
    if (this.sentAhead.delete(payload)) return;
    void this.send(message.topic, payload, message.qos);
  }

  /**
   * Sends a client's publish to the other instances before this instance acknowledges it:
   * resolves once Redis took it (or could not, counted as not sent; or after
   * SEND_AHEAD_WAIT_MS). Aedes 1.x writes a QoS 1 publish's PUBACK before it publishes, so
   * without this an instance that dies in between has acknowledged a ban that never left it.
   * Aedes' own emit() of the same packet (the same payload Buffer) then stays on this instance.
   */
  async sendAhead(packet: { topic: string; payload: Buffer | string; qos: number }): Promise<void> {
    if (!Buffer.isBuffer(packet.payload) || !packet.topic.startsWith(`${TOPIC_ROOT}/`)) return;
    this.sentAhead.add(packet.payload);
    await waitAtMost(this.send(packet.topic, packet.payload, packet.qos), SEND_AHEAD_WAIT_MS);
  }

  close(done: () => void): void {
    // Not QUIT: it is refused, unhandled, while Redis is away.
    this.closed ??= new Promise<void>((resolve) => {
      this.local.close(() => {
        this.publisher?.disconnect();
        this.subscriber?.disconnect();
        this.refusals.close();
        resolve();
      });
    });
    void this.closed.then(done);
  }

  /** One message to the other instances; while Redis is down, only counted as not sent (the cluster has logged that). */
  private async send(topic: string, payload: Buffer, qos: number | undefined): Promise<void> {
    if (this.state !== 'up' || !this.publisher) {
      this.counts.notSent += 1;
      return;
    }
    const seq = ++this.seq;
    // The sequence number is also the message's counter, by which Aedes on the other
    // instances delivers it once: it rises in the order the messages cross.
    const frame = sealFrame(this.options.key, { sender: this.brokerId, seq, time: Date.now(), topic, payload, qos: qos === 1 || qos === 2 ? qos : 0, counter: seq });
    this.counts.sent += 1;
    await this.publisher.publish(BUS_CHANNEL, frame).catch(() => {
      this.counts.sent -= 1;
      this.counts.notSent += 1;
    });
  }

  /** Checks a frame from Redis and delivers it to this instance's subscribers. */
  private receive(frame: Buffer): void {
    const opened = openFrame(this.options.key, frame);
    if (!opened.ok) {
      if (opened.reason === 'cluster-unsigned') this.lastUnsigned = Date.now();
      this.refusals.refuse(opened.reason, opened.detail);
      return;
    }
    const { message } = opened;
    if (message.sender === this.brokerId) return; // this instance's own echo
    const now = Date.now();
    const last = this.seen.get(message.sender);
    if (last && message.seq <= last.seq) {
      this.refusals.refuse('cluster-replayed', `a message from instance ${message.sender} with sequence number ${message.seq}, at or below ${last.seq} already taken: someone who can read and publish into Redis replays messages`);
      return;
    }
    const skewMs = Math.abs(now - message.time);
    if (skewMs > MAX_CLOCK_SKEW_MS) {
      this.lastStale = { at: now, skewMs };
      this.refusals.refuse('cluster-stale', `a message from instance ${message.sender} stamped ${Math.round(skewMs / 1000)} s away from this clock (at most ${MAX_CLOCK_SKEW_MS / 1000} s)`);
      return;
    }
    if (!last) this.forgetQuietSenders(now);
    this.seen.set(message.sender, { seq: message.seq, at: now });
    if (!message.topic.startsWith(`${TOPIC_ROOT}/`)) {
      this.refusals.refuse('cluster-malformed', `a signed message on the cluster bus for ${JSON.stringify(message.topic.slice(0, 80))}, outside ${TOPIC_ROOT}/`);
      return;
    }
    this.counts.received += 1;
    const packet = { cmd: 'publish', topic: message.topic, payload: message.payload, qos: message.qos, retain: false, dup: false, brokerId: message.sender, brokerCounter: message.counter };
    this.local.emit(packet as Message);
  }

  /** Senders quiet for longer than any message of theirs stays fresh: a replay of theirs is refused as too old. */
  private forgetQuietSenders(now: number): void {
    for (const [sender, { at }] of this.seen) if (now - at > 3 * MAX_CLOCK_SKEW_MS) this.seen.delete(sender);
  }

  private update(): void {
    if (this.closed || !this.publisher || !this.subscriber) return;
    const ready = this.publisher.status === 'ready' && this.subscriber.status === 'ready';
    const state: ClusterState = ready ? 'up' : this.state === 'connecting' && this.lastError === null ? 'connecting' : 'down';
    if (state === this.state) return;
    const { log } = this.options;
    if (state === 'up') {
      log.info({ redis: this.shownUrl }, 'cluster: connected to Redis; events cross to the other broker instances');
      this.lastError = null;
    } else {
      log.warn({ redis: this.shownUrl, ...(this.lastError ? { err: this.lastError } : {}) }, 'cluster: Redis is unreachable; serving this instance\'s clients only, events do not cross to the other instances until it returns (retrying)');
    }
    this.state = state;
    this.since = new Date();
  }
}

/** A Redis URL as it may be logged. */
function withoutPassword(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}
