import type { Logger } from '../../src/log.js';

/** One MQTT message as a link hands it on. */
export type Deliver = (topic: string, payload: Buffer, source: string, retained: boolean) => void;

/** What arrives while no intake runs (a reload) is held up to these bounds; beyond them it is dropped and counted. */
const MAX_HELD_MESSAGES = 100_000;
const MAX_HELD_BYTES = 64 * 1024 * 1024;

/**
 * Where the broker links deliver. While an intake runs, straight to it; during a reload, the
 * links keep running and what they receive is held until the next intake opens the inbox, so
 * that no message is lost between the old agent's intake and the new one's.
 */
export class Inbox {
  private handler: Deliver | undefined;
  private held: Array<Parameters<Deliver>> = [];
  private heldBytes = 0;
  private dropped = 0;

  constructor(private readonly log: Logger) {}

  readonly deliver: Deliver = (topic, payload, source, retained) => {
    if (this.handler) return this.handler(topic, payload, source, retained);
    if (this.held.length >= MAX_HELD_MESSAGES || this.heldBytes + payload.length > MAX_HELD_BYTES) {
      this.dropped += 1;
      return;
    }
    this.held.push([topic, payload, source, retained]);
    this.heldBytes += payload.length;
  };

  /** Hands what was held, then every new message, to `handler`. */
  open(handler: Deliver): void {
    const { held, dropped } = this;
    this.held = [];
    this.heldBytes = 0;
    this.dropped = 0;
    this.handler = handler;
    if (held.length > 0) this.log.info(`${held.length} message(s) received during the reload handed to the new intake`);
    if (dropped > 0) this.log.warn(`${dropped} message(s) received during the reload dropped: more than ${MAX_HELD_MESSAGES} messages or ${MAX_HELD_BYTES / 1024 / 1024} MiB arrived before the new config started; run syncfail2ban-client -f <jail> on the hosts that sent them`);
    for (const message of held) handler(...message);
  }

  /** From now on, messages are held for the next open(). */
  close(): void {
    this.handler = undefined;
  }
}
