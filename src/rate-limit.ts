import type { RateLimit } from './config-security.js';

interface Bucket {
  tokens: number;
  at: number;
}

/** Keys are names from the network (client ids, origins): the map stays bounded. */
const MAX_KEYS = 10_000;

/** One token bucket per key: `burst` at once, refilled at `perSecond`. */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes `tokens` for `key` (never more than the burst, or it could never pass); false when the key is over its limit. */
  take(key: string, tokens = 1): boolean {
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (bucket) {
      bucket.tokens = Math.min(this.limit.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.limit.perSecond);
      bucket.at = now;
    } else {
      if (this.buckets.size >= MAX_KEYS) this.evictFull();
      bucket = { tokens: this.limit.burst, at: now };
      this.buckets.set(key, bucket);
    }
    const cost = Math.min(tokens, this.limit.burst);
    if (bucket.tokens < cost) return false;
    bucket.tokens -= cost;
    return true;
  }

  /** Forgets buckets that have refilled: they hold nothing a new bucket would not. */
  private evictFull(): void {
    const now = this.now();
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.limit.perSecond >= this.limit.burst) this.buckets.delete(key);
    }
    if (this.buckets.size >= MAX_KEYS) this.buckets.delete(this.buckets.keys().next().value!);
  }
}
