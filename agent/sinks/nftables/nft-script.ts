import { isIPv6 } from 'node:net';
import type { NftablesConfig, NftHook } from '../../../src/config-nftables.js';
import { NFT_HOOKS } from '../../../src/config-nftables.js';

/** The agent's own table; it never touches any other. */
export const TABLE = 'syncfail2ban';
export const TABLE_SPEC = ['table', 'inet', TABLE] as const;

export type Family = 4 | 6;
export type SetKind = 'hosts' | 'nets';

/**
 * Two sets per family. Single addresses go into a hash set; networks into an interval set.
 * One interval set for both would be far slower: nft (1.0.6) reads the whole interval set
 * back before every change to it, so one ban into an interval set of 100,000 took 2.5 s,
 * into a hash set 23 ms.
 */
export const SETS: Record<SetKind, Record<Family, string>> = {
  hosts: { 4: 'hosts_v4', 6: 'hosts_v6' },
  nets: { 4: 'nets_v4', 6: 'nets_v6' },
};
export const ALL_SETS = [SETS.hosts[4], SETS.nets[4], SETS.hosts[6], SETS.nets[6]];

/** Before the usual filter chains (priority 0), so its counters see banned traffic first. */
const PRIORITY = 'filter - 10';

/** An address as it may go into a set: canonical text, checked here and nowhere else. */
export interface SetElement {
  readonly text: string;
  readonly family: Family;
  readonly kind: SetKind;
}

/**
 * The shapes of canonical addresses (src/ip.ts canonicalised them at intake): dotted IPv4,
 * or lowercase IPv6, and a prefix. Nothing else, no space, brace or name that nft
 * would parse as more, or look up in the DNS, can reach a script.
 */
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\/(?:3[0-2]|[12]?\d))?$/;
const IPV6 = /^([0-9a-f:.]{2,45})(?:\/(?:12[0-8]|1[01]\d|[1-9]?\d))?$/;

/** The set an address or network of canonical shape goes into, or undefined for anything else. */
export function setFor(address: string): string | undefined {
  const kind = address.includes('/') ? 'nets' : 'hosts';
  if (IPV4.test(address)) return SETS[kind][4];
  const v6 = IPV6.exec(address);
  return v6 && isIPv6(v6[1]!) ? SETS[kind][6] : undefined;
}

/** The element for an address or network of canonical shape, or undefined for anything else. */
export function toElement(address: string): SetElement | undefined {
  const set = setFor(address);
  return set === undefined ? undefined : { text: address, family: set.endsWith('v4') ? 4 : 6, kind: isNetworkSet(set) ? 'nets' : 'hosts' };
}

export function isNetworkSet(set: string): boolean {
  return set.startsWith('nets');
}

/** What the table needs besides its elements: where its chains hook, what they do, to which ports. */
export type TableShape = Pick<NftablesConfig, 'hooks' | 'verdict' | 'ports'>;

/**
 * Creates the table and its sets when missing (keeping the elements of existing ones) and
 * rebuilds its chains as `shape` says: one transaction, so protection never lapses.
 */
export function tableScript(shape: TableShape): string {
  const lines = [`add table inet ${TABLE}`];
  for (const family of [4, 6] as const) {
    const type = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
    lines.push(`add set inet ${TABLE} ${SETS.hosts[family]} { type ${type}; flags timeout; }`);
    lines.push(`add set inet ${TABLE} ${SETS.nets[family]} { type ${type}; flags interval,timeout; }`);
  }
  // A base chain's hook cannot change: every chain goes, and those configured come back.
  for (const hook of NFT_HOOKS) lines.push(`add chain inet ${TABLE} ${hook}`, `flush chain inet ${TABLE} ${hook}`, `delete chain inet ${TABLE} ${hook}`);
  for (const hook of shape.hooks) lines.push(...chainLines(hook, shape));
  return `${lines.join('\n')}\n`;
}

function chainLines(hook: NftHook, shape: TableShape): string[] {
  const ports = shape.ports.length === 0 ? '' : ` meta l4proto { tcp, udp } th dport { ${shape.ports.map(({ from, to }) => (from === to ? `${from}` : `${from}-${to}`)).join(', ')} }`;
  const lines = [`add chain inet ${TABLE} ${hook} { type filter hook ${hook} priority ${PRIORITY}; policy accept; }`];
  for (const family of [4, 6] as const) {
    const match = family === 4 ? 'ip saddr' : 'ip6 saddr';
    for (const kind of ['hosts', 'nets'] as const) lines.push(`add rule inet ${TABLE} ${hook} ${match} @${SETS[kind][family]}${ports} counter ${shape.verdict}`);
  }
  return lines;
}

/** One element to write: its text (of a SetElement), its timeout (seconds left of its ban) when the ban ends, and which change it came from. */
export interface ScriptElement {
  text: string;
  timeoutS?: number;
  /** The index of the change it came from, if any. */
  owner?: number;
}

/** Room a script starts with; it doubles as it fills (a batch of 25,000 elements takes about 750 KB). */
const INITIAL_BYTES = 64 * 1024;

/**
 * An nft script of element commands, one element per line, that knows which line came from
 * which change: nft names the line of an element it refuses. Written straight into bytes
 * (addresses, numbers and keywords are ASCII): a string per line, then their join, cost the
 * agent's small young generation more than the writing.
 */
export class ElementScript {
  private bytes = Buffer.allocUnsafe(INITIAL_BYTES);
  private length = 0;
  /** Per line, the index of the change it came from, or -1. */
  private readonly owners: number[] = [];

  /** `add` or `delete` of elements of one set. */
  elements(verb: 'add' | 'delete', set: string, entries: readonly ScriptElement[]): void {
    if (entries.length === 0) return;
    this.open(verb, set);
    for (const { text, timeoutS, owner } of entries) this.element(text, timeoutS, owner);
    this.close();
  }

  /** Begins an `add` or `delete` of elements of one set: element() lines follow, then close(). */
  open(verb: 'add' | 'delete', set: string): void {
    this.line(`${verb} element inet ${TABLE} ${set} {`);
  }

  /** One element's line: its text (of a SetElement), its timeout in seconds when its ban ends, and the change it came from. */
  element(text: string, timeoutS?: number, owner = -1): void {
    this.write(text);
    if (timeoutS !== undefined) {
      this.write(' timeout ');
      this.write(String(Math.max(1, Math.ceil(timeoutS))));
      this.write('s');
    }
    // Not through line(): no string made per element.
    this.write(',\n');
    this.owners.push(owner);
  }

  close(): void {
    this.line('}');
  }

  flushSet(set: string): void {
    this.line(`flush set inet ${TABLE} ${set}`);
  }

  get empty(): boolean {
    return this.length === 0;
  }

  /** The script as nft reads it. */
  content(): Buffer {
    return this.bytes.subarray(0, this.length);
  }

  /** The changes (indices) the given script lines (1-based) came from, when every line came from one. */
  ownersOf(lines: readonly number[]): number[] | undefined {
    const owners = lines.map((line) => this.owners[line - 1] ?? -1);
    return lines.length > 0 && owners.every((owner) => owner >= 0) ? owners : undefined;
  }

  /** A line that is no element's. */
  private line(text: string): void {
    this.write(`${text}\n`);
    this.owners.push(-1);
  }

  private write(text: string): void {
    if (this.length + text.length > this.bytes.length) {
      const larger = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, this.length + text.length));
      this.bytes.copy(larger, 0, 0, this.length);
      this.bytes = larger;
    }
    this.length += this.bytes.write(text, this.length, 'latin1');
  }
}
