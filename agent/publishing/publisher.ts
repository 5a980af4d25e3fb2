import type { RateLimit } from '../../src/config-security.js';
import { remainingBantime } from '../../src/bantime.js';
import { encodePayload, topicFor } from '../../src/event.js';
import type { Logger } from '../../src/log.js';
import { RateLimiter } from '../../src/rate-limit.js';
import { counter, gauge, type PartStatus, type Problem } from '../../src/status.js';
import type { Part } from '../../src/part.js';
import type { Outbox, OutboxEntry } from './outbox.js';

/** The broker link this host publishes on: its embedded broker's (mesh) or the hub's. */
export interface PublishLink {
  readonly url: string;
  readonly connected: boolean;
  /** Resolves once the broker acknowledged the message (QoS 1). */
  publish(topic: string, payload: string): Promise<void>;
}

export interface PublisherOptions {
  nodeId: string;
  log: Logger;
  /** The brokers' rate_limit / rate_burst: the publisher keeps below them, or the broker would close its connection. */
  rateLimit: RateLimit;
  /** An acknowledgement that takes longer means the broker is gone (connection_timeout). */
  timeoutMs: number;
}

/** QoS 1 messages awaiting PUBACK at once. */
const WINDOW = 100;
/** Pause before trying again while the broker does not answer. */
const RETRY_MS = 250;
/** A failure is logged, and a problem in the status, once it lasted this long: not a reconnection, nor the start-up. */
const GRACE_MS = 2_000;

/**
 * Publishes the outbox in order, with QoS 1, on the link the agent publishes on. An event
 * leaves the outbox once the broker acknowledged it; when the broker does not answer, the
 * events wait in the outbox (in state_dir) and go out in order once it does. A ban that
 * ended on this host before it could be published is not sent (its unban follows it).
 * Every message carries this host's node_id as origin and, for a ban, the seconds it has
 * left now (`bantime`, -1 until unbanned) and fail2ban's `bancount`.
 */
export class Publisher implements Part {
  private readonly limiter: RateLimiter;
  /** Entries of the outbox handed to the link (from the oldest) in this attempt. */
  private handed = 0;
  /** Sequence numbers acknowledged ahead of an older one still waiting. */
  private readonly acknowledged = new Set<number>();
  /** Bumped when an attempt fails: answers to an older attempt's messages are ignored. */
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private lastProgress = Date.now();
  private stopping = false;
  private readonly counts = { published: 0, expired: 0, failures: 0 };
  /** Since when publishing fails, and why; null while it works. */
  private failingSince: Date | null = null;
  private lastError: string | null = null;
  /** The failure was logged: its end will be too. */
  private failureLogged = false;

  constructor(
    private readonly outbox: Outbox,
    private readonly link: () => PublishLink,
    private readonly options: PublisherOptions,
  ) {
    // Below the broker's limit for this host's account, with room for its syncfail2ban-client.
    this.limiter = new RateLimiter({ perSecond: options.rateLimit.perSecond * 0.9, burst: Math.max(1, Math.floor(options.rateLimit.burst / 2)) });
  }

  /** Loads what a previous run left in the outbox (throws a ConfigError when state_dir cannot be used), then publishes it. */
  async start(): Promise<void> {
    this.outbox.load();
    this.stopping = false;
    this.pump();
  }

  /** Something was added to the outbox: publish it now. */
  readonly kick = (): void => {
    if (this.timer === undefined) this.pump();
  };

  async stop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    // What is in flight stays in the outbox until acknowledged: wait a moment for the answers, or it is sent again next time.
    const deadline = Date.now() + Math.min(deadlineMs, 1_000);
    while (this.handed > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    clearTimeout(this.watchdog);
    await this.outbox.close();
  }

  status(): PartStatus {
    const link = this.link();
    const problems: Problem[] = [...this.outbox.problems()];
    if (this.failingSince && this.outbox.size > 0 && Date.now() - this.failingSince.getTime() >= GRACE_MS) {
      problems.push({
        what: `${this.outbox.size} event(s) of this host's fail2ban wait to be published: cannot publish to ${link.url} since ${this.failingSince.toISOString()}${this.lastError ? ` (${this.lastError})` : ''}`,
        fix: `check that the broker runs and that this host reaches it (mq_ip/mq_port, or broker_url); the events are kept (up to ${this.outbox.limit}) and sent in order when it answers`,
      });
    }
    if (this.outbox.dropped > 0) {
      problems.push({
        what: `${this.outbox.dropped} event(s) of this host's fail2ban were dropped: the outbox was full (${this.outbox.limit}) while the broker did not answer`,
        fix: 'once the broker answers, run "syncfail2ban-client -f <jail>" for each primary jail so that the other hosts get every ban again',
      });
    }
    return {
      kind: 'publisher',
      problems,
      measures: {
        published: counter("events of this host's fail2ban published (acknowledged by the broker)", this.counts.published),
        backlog: gauge('events waiting in the outbox to be published', this.outbox.size),
        dropped: counter('events dropped because the outbox was full', this.outbox.dropped),
        expired: counter('bans that ended on this host before they could be published (not sent)', this.counts.expired),
        failures: counter('times publishing stopped working (the broker did not answer, or refused)', this.counts.failures),
      },
      details: { broker: link.url, state_dir: this.outbox.dir, failing_since: this.failingSince ? { time: this.failingSince.toISOString() } : null, last_error: this.lastError },
    };
  }

  private pump(): void {
    this.timer = undefined;
    if (this.stopping) return;
    const link = this.link();
    if (!link.connected) {
      if (this.outbox.size > this.handed) this.fail(`not connected to ${link.url}`);
      return;
    }
    const attempt = this.attempt;
    while (this.handed < this.outbox.size && this.handed - this.acknowledged.size < WINDOW) {
      const entry = this.outbox.at(this.handed)!;
      const message = this.message(entry);
      if (message === undefined) {
        this.counts.expired += 1;
        this.handed += 1;
        this.settle(entry.seq);
        continue;
      }
      if (!this.limiter.take('publish')) {
        this.timer = setTimeout(() => this.pump(), Math.ceil(1_000 / this.options.rateLimit.perSecond));
        break;
      }
      this.handed += 1;
      link.publish(message.topic, message.payload).then(
        () => {
          if (attempt !== this.attempt) return;
          this.counts.published += 1;
          this.settle(entry.seq);
          if (this.timer === undefined) this.pump();
        },
        (error: Error) => {
          if (attempt === this.attempt) this.fail(error.message);
        },
      );
    }
    this.armWatchdog();
  }

  /** The message for an entry, or undefined for a ban that has already ended. */
  private message({ action, jail, address, start, bantime, bancount }: OutboxEntry): { topic: string; payload: string } | undefined {
    const origin = this.options.nodeId;
    // What the ban has left now, not when it was queued: a wait in the outbox does not lengthen it.
    const left = action === 'ban' ? remainingBantime(bantime, start, Date.now()) : undefined;
    if (left === 0) return undefined;
    const fields = action === 'ban' ? { origin, bantime: left, bancount } : { origin };
    return { topic: topicFor(jail, action), payload: encodePayload({ text: address }, fields) };
  }

  /** The entry with this sequence number is done; the oldest done ones leave the outbox. */
  private settle(seq: number): void {
    this.acknowledged.add(seq);
    this.lastProgress = Date.now();
    let done = 0;
    for (let entry = this.outbox.at(0); entry && this.acknowledged.delete(entry.seq); entry = this.outbox.at(++done));
    if (done === 0) return;
    this.outbox.remove(done);
    this.handed -= done;
    if (this.failingSince) {
      if (this.failureLogged) this.options.log.info({ broker: this.link().url }, `publishing again after ${Math.round((Date.now() - this.failingSince.getTime()) / 1000)} s; ${this.outbox.size} kept event(s) still to send`);
      this.failingSince = null;
      this.failureLogged = false;
      this.lastError = null;
    }
  }

  /** Gives up on this attempt: everything not acknowledged is sent again, in order, once the link answers. */
  private fail(reason: string): void {
    this.attempt += 1;
    this.handed = 0;
    this.acknowledged.clear();
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    this.lastError = reason;
    if (!this.failingSince) {
      this.failingSince = new Date();
      this.counts.failures += 1;
    }
    if (!this.failureLogged && Date.now() - this.failingSince.getTime() >= GRACE_MS) {
      this.failureLogged = true;
      this.options.log.warn({ broker: this.link().url, err: reason }, `cannot publish; keeping this host's events in the outbox (${this.outbox.size} now, up to ${this.outbox.limit}) and sending them in order when the broker answers`);
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.pump(), RETRY_MS);
  }

  /** Messages handed to the link that are not acknowledged within the timeout mean a broker that is gone. */
  private armWatchdog(): void {
    if (this.watchdog || this.handed === 0) return;
    this.lastProgress = Date.now();
    const check = () => {
      this.watchdog = undefined;
      if (this.stopping || this.handed === 0) return;
      const idle = Date.now() - this.lastProgress;
      if (idle >= this.options.timeoutMs) return this.fail(`no acknowledgement within ${this.options.timeoutMs} ms`);
      this.watchdog = setTimeout(check, this.options.timeoutMs - idle);
    };
    this.watchdog = setTimeout(check, this.options.timeoutMs);
  }
}
