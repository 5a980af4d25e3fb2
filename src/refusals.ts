import type { Logger } from './log.js';

/**
 * Counts refused messages per reason and logs without flooding: the first refusal of a
 * reason at once, then one summary line per reason and interval while they keep coming.
 */
export class Refusals {
  private readonly counts = new Map<string, number>();
  private readonly unlogged = new Map<string, { count: number; sample: string }>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly log: Logger,
    intervalMs = 10_000,
  ) {
    this.timer = setInterval(() => this.summarise(), intervalMs);
    this.timer.unref();
  }

  refuse(reason: string, detail: string, context: Record<string, unknown> = {}): void {
    const total = (this.counts.get(reason) ?? 0) + 1;
    this.counts.set(reason, total);
    if (total === 1) {
      this.log.warn({ ...context, reason }, `refused: ${detail}`);
      return;
    }
    const pending = this.unlogged.get(reason);
    if (pending) pending.count += 1;
    else this.unlogged.set(reason, { count: 1, sample: detail });
  }

  byReason(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  close(): void {
    clearInterval(this.timer);
    this.summarise();
  }

  private summarise(): void {
    for (const [reason, { count, sample }] of this.unlogged) {
      this.log.warn({ reason, count, total: this.counts.get(reason) }, `refused ${count} more message(s) (${reason}), e.g. ${sample}`);
    }
    this.unlogged.clear();
  }
}
