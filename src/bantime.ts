/**
 * A ban's remaining time, as events (`"bantime"`) and snapshot entries (`"bantimes"`) carry
 * it: the whole seconds the ban had left when the message was published, by the origin's
 * clock; -1, or no bantime at all, means until unbanned. A receiver sets the end on its own
 * clock (the time it got the message, plus the bantime), so hosts whose clocks differ agree
 * on when a ban ends, within the message's transit time.
 */
export const UNTIL_UNBANNED = -1;
/** Ten years: the longest bantime a message may carry. Longer bans are published as until unbanned. */
export const MAX_BANTIME_S = 10 * 365 * 86_400;

/** Whether `value` is a bantime a message may carry: -1, or whole seconds from 0 to MAX_BANTIME_S. */
export function isBantime(value: unknown): value is number {
  return value === UNTIL_UNBANNED || (Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= MAX_BANTIME_S);
}

/**
 * What a ban of `lengthS` seconds (fail2ban's `bantime`; negative: for good) that began at
 * `startS` (seconds since the epoch, fail2ban's `time`) has left at `nowMs`: rounded up, so
 * that no receiver releases it early; at least 0, at most the ban's length.
 */
export function remainingBantime(lengthS: number, startS: number, nowMs: number): number {
  if (lengthS < 0) return UNTIL_UNBANNED;
  const left = Math.min(Math.max(Math.ceil(startS + lengthS - nowMs / 1000), 0), Math.ceil(lengthS));
  return left > MAX_BANTIME_S ? UNTIL_UNBANNED : left;
}
