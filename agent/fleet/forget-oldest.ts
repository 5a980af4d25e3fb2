/**
 * Forgets the `count` oldest entries (first inserted) of a Set or Map in one walk: deleting
 * the first entry one at a time walks past every entry deleted before it.
 */
export function forgetOldest(entries: Set<string> | Map<string, unknown>, count: number): void {
  let forget = count;
  if (forget <= 0) return;
  for (const key of entries.keys()) {
    entries.delete(key);
    if (--forget === 0) return;
  }
}
