/**
 * Forgets the `count` oldest entries (first inserted) of a Set or Map in one walk: deleting
 * the first entry one at a time walks past every entry deleted before it. `forgetting` hears
 * of each key just before it goes.
 */
export function forgetOldest(entries: Set<string> | Map<string, unknown>, count: number, forgetting?: (key: string) => void): void {
  let forget = count;
  if (forget <= 0) return;
  for (const key of entries.keys()) {
    forgetting?.(key);
    entries.delete(key);
    if (--forget === 0) return;
  }
}
