import { mustParseAddress } from '../../../src/ip.js';

/**
 * The networks of the list that no other network of the list contains: what an interval
 * set may hold, since its elements must not overlap (two prefixes overlap only when one
 * contains the other). Input: canonical network texts, each once.
 */
export function networkCover(networks: readonly string[]): string[] {
  const parsed = networks
    .map((text) => {
      const { network, prefix } = mustParseAddress(text, { anyPrefix: true });
      return { text, bytes: network.toByteArray(), prefix };
    })
    .sort((a, b) => a.prefix - b.prefix);
  const kept = new Set<string>();
  const keptPrefixes = new Set<number>();
  const covering: string[] = [];
  for (const { text, bytes, prefix } of parsed) {
    if ([...keptPrefixes].some((shorter) => shorter < prefix && kept.has(key(bytes, shorter)))) continue;
    kept.add(key(bytes, prefix));
    keptPrefixes.add(prefix);
    covering.push(text);
  }
  const inCover = new Set(covering);
  return networks.filter((text) => inCover.has(text));
}

/** The first `prefix` bits of an address, as text (the length of `bytes` tells the family apart). */
function key(bytes: readonly number[], prefix: number): string {
  const whole = prefix >> 3;
  const rest = prefix & 7;
  const head = bytes.slice(0, whole);
  if (rest > 0) head.push(bytes[whole]! & (0xff << (8 - rest)) & 0xff);
  return `${bytes.length}:${prefix}:${head.join('.')}`;
}
