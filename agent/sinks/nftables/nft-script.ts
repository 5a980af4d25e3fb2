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

/** The element for an address or network of canonical shape, or undefined for anything else. */
export function toElement(address: string): SetElement | undefined {
  const kind = address.includes('/') ? 'nets' : 'hosts';
  if (IPV4.test(address)) return { text: address, family: 4, kind };
  const v6 = IPV6.exec(address);
  return v6 && isIPv6(v6[1]!) ? { text: address, family: 6, kind } : undefined;
}

export function setOf(element: SetElement): string {
  return SETS[element.kind][element.family];
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

/**
 * An nft script of element commands, one element per line, that knows which line came from
 * which change: nft names the line of an element it refuses.
 */
export class ElementScript {
  private readonly lines: string[] = [];
  /** Per line, the index of the change it came from, or -1. */
  private readonly owners: number[] = [];

  /** `add` or `delete` of elements of one set. */
  elements(verb: 'add' | 'delete', set: string, entries: readonly ScriptElement[]): void {
    if (entries.length === 0) return;
    this.line(`${verb} element inet ${TABLE} ${set} {`);
    for (const { text, timeoutS, owner } of entries) this.line(timeoutS === undefined ? `${text},` : `${text} timeout ${Math.max(1, Math.ceil(timeoutS))}s,`, owner);
    this.line('}');
  }

  flushSet(set: string): void {
    this.line(`flush set inet ${TABLE} ${set}`);
  }

  get empty(): boolean {
    return this.lines.length === 0;
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }

  /** The changes (indices) the given script lines (1-based) came from, when every line came from one. */
  ownersOf(lines: readonly number[]): number[] | undefined {
    const owners = lines.map((line) => this.owners[line - 1] ?? -1);
    return lines.length > 0 && owners.every((owner) => owner >= 0) ? owners : undefined;
  }

  private line(text: string, owner = -1): void {
    this.lines.push(text);
    this.owners.push(owner);
  }
}
