import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';

/** An address or network in the one spelling fail2ban, pf and every peer agree on. */
export interface CanonicalAddress {
  /** `203.0.113.7`, `2001:db8::1`, `10.0.1.0/24`: what goes to fail2ban and OPNsense. */
  text: string;
  family: 4 | 6;
  /** Network address (equal to the host address when `prefix` is the full width). */
  network: ipaddr.IPv4 | ipaddr.IPv6;
  prefix: number;
}

export type AddressResult = { ok: true; address: CanonicalAddress } | { ok: false; reason: string };

/** Longest text that can be an address with a prefix (IPv6 with embedded IPv4 and /128). */
const MAX_LENGTH = 49;
/** Networks wider than this are refused: one event must not firewall a sizeable part of the internet. */
const MIN_PREFIX = { 4: 8, 6: 16 } as const;

/**
 * Validates and canonicalises one IPv4/IPv6 address or CIDR network.
 * fail2ban stores any string it is given, so this is the gate in front of it: strict
 * dotted decimal for IPv4 (no octal, hex or short forms), no IPv6 zone ids, lowercase
 * compressed IPv6 (RFC 5952), host bits cleared in networks, IPv4-mapped IPv6 as IPv4.
 */
export function parseAddress(input: string, options: { anyPrefix?: boolean } = {}): AddressResult {
  if (input.length === 0) return { ok: false, reason: 'empty address' };
  if (input.length > MAX_LENGTH) return { ok: false, reason: 'too long to be an address' };
  const slash = input.indexOf('/');
  if (slash === -1) {
    const value = plainIPv4(input);
    // Digits without leading zeros: the text is already the canonical spelling.
    if (value !== undefined) return { ok: true, address: { text: input, family: 4, network: new ipaddr.IPv4([value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255]), prefix: 32 } };
  }
  const host = slash === -1 ? input : input.slice(0, slash);
  const dottedV4 = isIPv4(host);
  if (!dottedV4 && !(isIPv6(host) && !host.includes('%'))) return { ok: false, reason: 'not an IP address' };
  return canonical(host, dottedV4, slash === -1 ? undefined : input.slice(slash + 1), options);
}

const DOT = 46;
const ZERO = 48;
const NINE = 57;

/**
 * The value of a plain IPv4 address, as an unsigned 32-bit number: dotted decimal as node's
 * isIPv4 takes it (four numbers of 0 to 255, no leading zeros); undefined for anything else,
 * which parseAddress then reads in full. Read without regular expressions or allocations: a
 * snapshot has 100,000.
 */
export function plainIPv4(input: string): number | undefined {
  let value = 0;
  let octets = 0;
  let octet = 0;
  let digits = 0;
  for (let i = 0; i <= input.length; i++) {
    const code = i < input.length ? input.charCodeAt(i) : DOT;
    if (code === DOT) {
      if (digits === 0 || octets === 4) return undefined;
      value = value * 256 + octet;
      octets += 1;
      octet = 0;
      digits = 0;
    } else if (code >= ZERO && code <= NINE && !(digits > 0 && octet === 0)) {
      octet = octet * 10 + code - ZERO;
      digits += 1;
      if (octet > 255) return undefined;
    } else {
      return undefined;
    }
  }
  return octets === 4 ? value : undefined;
}

/**
 * parseAddress's canonical text of the input, or why it is not an address; a plain IPv4
 * address is its own canonical text, found without building its parsed form (a listing of
 * 100,000 bans).
 */
export function canonicalText(input: string): string | { reason: string } {
  if (plainIPv4(input) !== undefined) return input;
  const parsed = parseAddress(input);
  return parsed.ok ? parsed.address.text : { reason: parsed.reason };
}

/** The canonical form of a host part that passed validation, with its prefix text. */
function canonical(host: string, dottedV4: boolean, prefixText: string | undefined, options: { anyPrefix?: boolean }): AddressResult {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  if (dottedV4) {
    parsed = ipaddr.IPv4.parse(host);
  } else {
    const v6 = ipaddr.IPv6.parse(host);
    parsed = v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
  }
  const family = parsed.kind() === 'ipv4' ? 4 : 6;
  const width = family === 4 ? 32 : 128;
  const mappedShift = family === 4 && !dottedV4 ? 96 : 0;

  let prefix = width;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText)) return { ok: false, reason: 'malformed prefix length' };
    prefix = Number(prefixText) - mappedShift;
    if (prefix < 0 || prefix > width) return { ok: false, reason: `prefix length out of range for IPv${family}` };
  }
  if (!options.anyPrefix && prefix < MIN_PREFIX[family]) {
    return { ok: false, reason: `network wider than /${MIN_PREFIX[family]} refused for IPv${family}` };
  }
  if (prefix === width) return { ok: true, address: { text: parsed.toString(), family, network: parsed, prefix } };

  const network =
    family === 4
      ? ipaddr.IPv4.networkAddressFromCIDR(`${parsed.toString()}/${prefix}`)
      : ipaddr.IPv6.networkAddressFromCIDR(`${parsed.toString()}/${prefix}`);
  return { ok: true, address: { text: `${network.toString()}/${prefix}`, family, network, prefix } };
}

/** True when the two address ranges share at least one address. */
export function overlaps(a: CanonicalAddress, b: CanonicalAddress): boolean {
  if (a.family !== b.family) return false;
  const shorter = Math.min(a.prefix, b.prefix);
  return (a.network as ipaddr.IPv4).match(b.network as ipaddr.IPv4, shorter);
}

/**
 * Parses an address that is valid by construction (never-ban ranges, this host's interfaces,
 * DNS answers, test fixtures); throws otherwise. Without node's isIPv6, whose first call
 * compiles a large regular expression: the client checks its never-ban list on every ban.
 */
export function mustParseAddress(input: string, options: { anyPrefix?: boolean } = {}): CanonicalAddress {
  const slash = input.indexOf('/');
  const host = slash === -1 ? input : input.slice(0, slash);
  const dottedV4 = isIPv4(host);
  const result = dottedV4 || ipaddr.IPv6.isValid(host) ? canonical(host, dottedV4, slash === -1 ? undefined : input.slice(slash + 1), options) : { ok: false as const, reason: 'not an IP address' };
  if (!result.ok) throw new Error(`${JSON.stringify(input)}: ${result.reason}`);
  return result.address;
}

/** Whether the text is a valid address in its canonical spelling (as stored files and fail2ban listings must be). */
export function isCanonical(text: string): boolean {
  const parsed = parseAddress(text);
  return parsed.ok && parsed.address.text === text;
}

const TEREDO = mustParseAddress('2001::/32', { anyPrefix: true });

/** The 6to4 form (RFC 3056, 2002::/16) of an IPv4 address or network: 2002:cb00:7107::/48 for 203.0.113.7. */
export function sixToFourOf(v4: CanonicalAddress): CanonicalAddress {
  const bytes = [0x20, 0x02, ...v4.network.toByteArray(), ...new Array<number>(10).fill(0)];
  return mustParseAddress(`${ipaddr.fromByteArray(bytes).toString()}/${16 + v4.prefix}`, { anyPrefix: true });
}

/**
 * Whether the IPv6 range holds a Teredo address (RFC 4380, 2001::/32) of a client in the IPv4
 * range `v4`: the client's address stands in the last 32 bits, inverted, whatever the server.
 */
export function holdsTeredoOf(range: CanonicalAddress, v4: CanonicalAddress): boolean {
  if (range.family !== 6 || v4.family !== 4 || !overlaps(range, TEREDO)) return false;
  if (range.prefix <= 96) return true; // the client bits are all free in the range
  const bytes = range.network.toByteArray();
  const rangeTail = ((bytes[12]! << 24) | (bytes[13]! << 16) | (bytes[14]! << 8) | bytes[15]!) >>> 0;
  const client = v4.network.toByteArray();
  const invertedClient = ~((client[0]! << 24) | (client[1]! << 16) | (client[2]! << 8) | client[3]!) >>> 0;
  const fixed = Math.min(range.prefix - 96, v4.prefix);
  const mask = fixed === 0 ? 0 : (0xffffffff << (32 - fixed)) >>> 0;
  return ((rangeTail ^ invertedClient) & mask) >>> 0 === 0;
}
