/**
 * Lets a repeated log line through once per interval per key, so a firewall that keeps
 * failing the same way is reported without flooding the journal.
 */
export class LogThrottle {
  private readonly last = new Map<string, { at: number; held: number }>();

  constructor(private readonly intervalMs = 60_000) {}

  /** null: hold this line back. Otherwise how many lines with this key were held back since the last one. */
  pass(key: string): number | null {
    const now = Date.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.held += 1;
      return null;
    }
    this.last.set(key, { at: now, held: 0 });
    return entry?.held ?? 0;
  }
}
