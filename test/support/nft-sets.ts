import type { NetNamespace } from './netns.js';
import { waitFor } from './wait.js';

/**
 * The elements of a set of the agent's table as `nft -j list set` shows them inside the
 * namespace (address or network -> seconds to expiry), read without the agent's own parser.
 */
export async function setElements(ns: NetNamespace, set: string): Promise<Map<string, number | undefined>> {
  const json = JSON.parse(await ns.must('nft', ['-j', 'list', 'set', 'inet', 'syncfail2ban', set])) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
  const elements = new Map<string, number | undefined>();
  for (const entry of json.nftables.find((item) => item.set)?.set?.elem ?? []) {
    const timed = (entry as { elem?: { val: unknown; expires?: number } }).elem;
    const value = timed ? timed.val : entry;
    const prefix = (value as { prefix?: { addr: string; len: number } }).prefix;
    elements.set(prefix ? `${prefix.addr}/${prefix.len}` : String(value), timed?.expires);
  }
  return elements;
}

/** The addresses and networks a set holds. */
export async function setNames(ns: NetNamespace, set: string): Promise<string[]> {
  return [...(await setElements(ns, set)).keys()];
}

/**
 * Waits until the set lists `count` elements and returns them. Right after tens of thousands
 * were added, `nft list set` was seen to show a few thousand fewer for a moment (the agent had
 * applied every one; the same listing a second later showed them all): the kernel's listing
 * of a large hash set, not its lookups.
 */
export async function waitForSetNames(ns: NetNamespace, set: string, count: number, timeoutMs = 10_000): Promise<string[]> {
  return waitFor(async () => {
    const names = await setNames(ns, set);
    return names.length === count ? names : undefined;
  }, `nft to list ${count} elements in ${set}`, timeoutMs, 200);
}
