import { networkInterfaces } from 'node:os';
import { type CanonicalAddress, mustParseAddress, overlaps } from '../src/ip.js';

interface Entry {
  range: CanonicalAddress;
  why: string;
}

const ALWAYS: Array<[string, string]> = [
  ['127.0.0.0/8', 'loopback'],
  ['::1', 'loopback'],
  ['0.0.0.0', 'unspecified address'],
  ['::', 'unspecified address'],
];

/**
 * Addresses no event may ban, whatever arrives: loopback, this host's own addresses and
 * the admin's `ignoreip`. A network is refused when it overlaps any of them.
 */
export class NeverBanList {
  private readonly entries: Entry[];

  constructor(ignoreIp: readonly CanonicalAddress[], ownAddresses: readonly string[] = hostAddresses()) {
    this.entries = [
      ...ALWAYS.map(([text, why]) => ({ range: mustParseAddress(text, { anyPrefix: true }), why })),
      ...ownAddresses.map((text) => ({ range: mustParseAddress(text), why: "this host's own address" })),
      ...ignoreIp.map((range) => ({ range, why: `ignoreip ${range.text}` })),
    ];
  }

  /** Why `address` must not be banned, or null when it may be. */
  reason(address: CanonicalAddress): string | null {
    return this.entries.find((entry) => overlaps(entry.range, address))?.why ?? null;
  }
}

/** Every address configured on this host's interfaces, without IPv6 zone ids. */
export function hostAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((info) => info.address.split('%')[0]!)
    .filter((address, index, all) => all.indexOf(address) === index);
}
