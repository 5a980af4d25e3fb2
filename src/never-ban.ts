import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { DEFAULT_MIN_PREFIX, urlHostname, type Config, type MinPrefix } from './config.js';
import { type CanonicalAddress, holdsTeredoOf, mustParseAddress, overlaps, sixToFourOf } from './ip.js';

interface Entry {
  range: CanonicalAddress;
  why: string;
  /** An IPv4 host's or network's 6to4 range, protected with it, as is its Teredo form. */
  sixToFour?: CanonicalAddress;
}

/** Ranges that are never the source of an attack, or whose ban would cut off far more than one attacker. */
const SPECIAL: Array<[string, string]> = [
  ['127.0.0.0/8', 'loopback'],
  ['::1', 'loopback'],
  ['0.0.0.0/8', 'unspecified ("this network")'],
  ['::', 'unspecified address'],
  ['224.0.0.0/4', 'multicast'],
  ['ff00::/8', 'multicast'],
  ['240.0.0.0/4', 'reserved and broadcast (240.0.0.0/4, 255.255.255.255)'],
  ['64:ff9b::/96', 'NAT64 (all of IPv4 for IPv6-only hosts)'],
  ['64:ff9b:1::/48', 'local-use NAT64'],
  ['100::/64', 'discard-only'],
  ['fe80::/10', "link-local (a host's neighbours, the IPv6 default router)"],
  ['169.254.0.0/16', "link-local (a host's neighbours, cloud metadata services)"],
];

/**
 * Addresses no event may ban, whatever arrives: special ranges (loopback, unspecified,
 * multicast, broadcast, link-local, NAT64...), this host's own addresses, the admin's
 * `ignoreip`, the fleet's own hosts (set by protect()), and networks wider than the minimum
 * prefix. A network is refused when it overlaps any of them. An IPv4 address of the last
 * three also protects the IPv6 forms that tunnel to it: its 6to4 network (2002::/16) and its
 * Teredo addresses (2001::/32).
 */
export class NeverBanList {
  private readonly entries: Entry[];
  private readonly groups = new Map<string, Entry[]>();
  /** The IPv4 ranges of groups and entries, as numbers (see reasonIPv4); built when first asked after a change. */
  private ipv4: IPv4Ranges | undefined;

  constructor(
    ignoreIp: readonly CanonicalAddress[],
    ownAddresses: readonly string[],
    private readonly minPrefix: MinPrefix = DEFAULT_MIN_PREFIX,
  ) {
    this.entries = [
      ...SPECIAL.map(([text, why]) => ({ range: mustParseAddress(text, { anyPrefix: true }), why })),
      ...ownAddresses.map((text) => withTunnels(mustParseAddress(text), "this host's own address")),
      ...ignoreIp.map((range) => withTunnels(range, `ignoreip ${range.text}`)),
    ];
  }

  /** Replaces the addresses protected under `group` (e.g. what a peer's name resolves to now). */
  protect(group: string, addresses: readonly CanonicalAddress[], why: string): void {
    this.groups.set(group, addresses.map((range) => withTunnels(range, why)));
    this.ipv4 = undefined;
  }

  /** Why `address` must not be banned, or null when it may be. */
  reason(address: CanonicalAddress): string | null {
    const min = this.minPrefix[address.family];
    if (address.prefix < min) return `network wider than /${min} (min_prefix_ipv${address.family})`;
    for (const entries of this.groups.values()) {
      const why = firstProtecting(entries, address);
      if (why !== undefined) return why;
    }
    return firstProtecting(this.entries, address) ?? null;
  }

  /**
   * reason() for an IPv4 host address given as its value (plainIPv4), without parsing it:
   * a snapshot asks for 100,000 addresses, and a large fleet protects 1,000 hosts.
   */
  reasonIPv4(value: number): string | null {
    this.ipv4 ??= ipv4Ranges([...[...this.groups.values()].flat(), ...this.entries]);
    const host = this.ipv4.hosts.get(value);
    // The first range in reason()'s order that holds the address: a network before the host, or the host.
    for (const network of this.ipv4.networks) {
      if (host && network.order > host.order) break;
      if ((value & network.mask) >>> 0 === network.base) return network.why;
    }
    return host?.why ?? null;
  }
}

interface IPv4Range {
  /** Its place in reason()'s order of the ranges. */
  order: number;
  why: string;
}

interface IPv4Ranges {
  hosts: Map<number, IPv4Range>;
  networks: Array<IPv4Range & { base: number; mask: number }>;
}

/** The IPv4 ranges of `entries` (in reason()'s order), single hosts looked up, networks matched. */
function ipv4Ranges(entries: readonly Entry[]): IPv4Ranges {
  const ranges: IPv4Ranges = { hosts: new Map(), networks: [] };
  entries.forEach(({ range, why }, order) => {
    if (range.family !== 4) return;
    const base = range.network.toByteArray().reduce((value, byte) => value * 256 + byte, 0);
    if (range.prefix === 32) {
      if (!ranges.hosts.has(base)) ranges.hosts.set(base, { order, why });
    } else {
      ranges.networks.push({ order, why, base, mask: range.prefix === 0 ? 0 : (0xffffffff << (32 - range.prefix)) >>> 0 });
    }
  });
  return ranges;
}

function withTunnels(range: CanonicalAddress, why: string): Entry {
  return range.family === 4 ? { range, why, sixToFour: sixToFourOf(range) } : { range, why };
}

/** Why the first of `entries` that protects `address` does, or undefined. */
function firstProtecting(entries: readonly Entry[], address: CanonicalAddress): string | undefined {
  for (const entry of entries) {
    const why = protects(entry, address);
    if (why !== undefined) return why;
  }
  return undefined;
}

/** Why `entry` protects `address`, or undefined. */
function protects(entry: Entry, address: CanonicalAddress): string | undefined {
  if (overlaps(entry.range, address)) return entry.why;
  if (!entry.sixToFour || address.family !== 6) return undefined;
  if (overlaps(entry.sixToFour, address)) return `${entry.why}, in its 6to4 form ${entry.sixToFour.text}`;
  if (holdsTeredoOf(address, entry.range)) return `${entry.why}, in its Teredo form`;
  return undefined;
}

/** Every address configured on this host's interfaces, without IPv6 zone ids. */
export function hostAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((info) => info.address.split('%')[0]!)
    .filter((address, index, all) => all.indexOf(address) === index);
}

export interface FleetHost {
  host: string;
  why: string;
}

/** The hosts the sync network itself runs on: banning one would cut the network or the firewall off. */
export function fleetHosts(config: Config): FleetHost[] {
  return [
    ...config.syncServers.map(({ host }) => ({ host, why: `sync_servers ${host}` })),
    ...config.brokerUrls.map((url) => ({ host: urlHostname(url), why: 'broker_url host' })),
    ...config.opnsense.firewalls.map((firewall) => ({ host: urlHostname(firewall.baseUrl), why: `opn_fw_ip ${firewall.name}` })),
  ];
}

/** Protects the fleet hosts written as addresses, at once; names are the agent's to resolve (agent/intake/fleet-hosts.ts). */
export function protectFleetAddresses(list: NeverBanList, hosts: readonly FleetHost[]): void {
  for (const { host, why } of hosts) {
    if (isIP(host)) list.protect(host, [mustParseAddress(host)], why);
  }
}
