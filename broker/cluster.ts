import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import mqemitter, { type Message, type MQEmitter } from 'mqemitter';
import MQEmitterRedis from 'mqemitter-redis';
import type { ClusterConfig } from '../src/config-hub.js';
import { TOPIC_ROOT } from '../src/event.js';
import type { Logger } from '../src/log.js';
import type { Refusals } from '../src/refusals.js';

export interface ClusterOptions extends ClusterConfig {
  log: Logger;
  /** Where messages from Redis that are not an instance's are counted and logged. */
  refusals: Refusals;
}

/** `up`: both Redis connections (publish, subscribe) are ready, so events cross instances. */
type ClusterState = 'connecting' | 'up' | 'down';

type Listener = (message: Message, done: () => void) => void;

/** What crosses instances: the fleet's events and Aedes' own broker announcements (which close a client id taken on another instance). */
const SHARED_ROOTS = [TOPIC_ROOT, '$SYS'];

function isShared(topic: string): boolean {
  return SHARED_ROOTS.some((root) => topic.startsWith(`${root}/`));
}

/**
 * The message bus of one clustered broker instance, given to Aedes as its `mq`. Local
 * delivery never depends on Redis: every message goes to this instance's subscribers at
 * once, and to the other instances through Redis pub/sub (mqemitter-redis) when Redis is
 * up. A message that comes back from Redis with this instance's broker id is its own echo
 * and is dropped, so every subscriber gets each message once. Redis only relays: nothing
 * is stored there, and a message published while Redis is down is not queued.
 */
export class ClusterBus {
  /** Aedes stamps this on every packet it publishes (its `id` option). */
  readonly brokerId = randomUUID();
  private readonly local: MQEmitter = mqemitter({ concurrency: 100, matchEmptyLevels: true });
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  private readonly remote: MQEmitter;
  private readonly shownUrl: string;
  private state: ClusterState = 'connecting';
  private lastError: string | null = null;
  private closing = false;

  constructor(private readonly options: ClusterOptions) {
    this.shownUrl = withoutPassword(options.redisUrl);
    const tls = options.redisCa ? { tls: { ca: options.redisCa } } : {};
    // ioredis reconnects on its own (every 50 ms growing to 2 s) and re-subscribes.
    // The publisher queues nothing while Redis is away: memory stays bounded, and an
    // event that cannot cross now is healed by the origin's `-f`.
    this.publisher = new Redis(options.redisUrl, { ...tls, enableOfflineQueue: false, connectionName: 'syncfail2ban-broker' });
    // The subscriber's only commands are the subscriptions: they wait for Redis however long it takes.
    this.subscriber = new Redis(options.redisUrl, { ...tls, maxRetriesPerRequest: null, connectionName: 'syncfail2ban-broker' });
    for (const connection of [this.publisher, this.subscriber]) {
      connection.on('ready', () => this.update());
      connection.on('close', () => this.update());
      connection.on('error', (error: Error) => {
        this.lastError = error.message;
        this.update();
      });
    }
    guardMessages(this.subscriber, (error) => options.refusals.refuse('cluster-malformed', `a message from Redis that no broker instance sent (${error.message}); dropped`));
    const remote = MQEmitterRedis({ pubConn: this.publisher, subConn: this.subscriber } as RedisOptions);
    // mqemitter-redis re-emits every connection error on `state`; unheard, that would end the process.
    (remote as unknown as { state: EventEmitter }).state.on('error', () => undefined);
    this.remote = remote;
    const fromOtherInstances: Listener = (message, done) => this.deliverRemote(message, done);
    for (const root of SHARED_ROOTS) this.remote.on(`${root}/#`, fromOtherInstances);
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
    if (!isShared(message.topic)) return;
    // While Redis is down, only this instance's clients get it (the cluster has logged that).
    if (this.state === 'up') this.remote.emit(message);
  }

  close(done: () => void): void {
    this.closing = true;
    // Not mqemitter-redis's close(): its QUIT is refused, unhandled, while Redis is away.
    this.local.close(() => {
      this.publisher.disconnect();
      this.subscriber.disconnect();
      done();
    });
  }

  private deliverRemote(message: Message, done: () => void): void {
    if (message.brokerId === this.brokerId) return done();
    if (typeof message.topic !== 'string' || !Buffer.isBuffer(message.payload)) {
      this.options.refusals.refuse('cluster-malformed', 'a message from Redis without a topic or payload; dropped');
      return done();
    }
    this.local.emit({ ...message, retain: false }, () => done());
  }

  private update(): void {
    if (this.closing) return;
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
  }
}

/** A Redis URL as it may be logged. */
function withoutPassword(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

/**
 * Whatever arrives on the subscribed channels comes from anyone who can publish to Redis;
 * mqemitter-redis decodes it inside ioredis's event handler, where a throw (a message that
 * is not msgpack, say) would end the process. Its listeners are wrapped before it adds them.
 */
function guardMessages(subscriber: Redis, onMalformed: (error: Error) => void): void {
  const on = subscriber.on.bind(subscriber);
  subscriber.on = ((event: string, listener: (...args: unknown[]) => void) => {
    if (event !== 'messageBuffer' && event !== 'pmessageBuffer') return on(event, listener);
    return on(event, (...args: unknown[]) => {
      try {
        listener(...args);
      } catch (error) {
        onMalformed(error as Error);
      }
    });
  }) as Redis['on'];
}
