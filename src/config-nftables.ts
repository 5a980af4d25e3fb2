import type { SectionReader } from './config-reader.js';
import { JAIL_NAME } from './event.js';

export type NftHook = 'input' | 'forward';
export const NFT_HOOKS: readonly NftHook[] = ['input', 'forward'];

export interface PortRange {
  from: number;
  to: number;
}

/** The kernel-sets sink: the fleet's bans in nftables sets of the agent's own table. */
export interface NftablesConfig {
  enabled: boolean;
  /** The primary jails whose fleet bans it enforces. */
  jails: string[];
  /** Where its chains hook: input (this host's own services), forward (a router's traffic), or both. */
  hooks: NftHook[];
  verdict: 'drop' | 'reject';
  /** Only traffic to these TCP/UDP destination ports is blocked; empty: all traffic from a banned address. */
  ports: PortRange[];
  /** Seconds between full comparisons of the sets with what they should hold. */
  reconcileIntervalS: number;
}

/** The nft_* keys; `syncJails` is [jails], whose primary jails feed the sets unless nft_jails names others. */
export function readNftables(general: SectionReader, syncJails: ReadonlyMap<string, string>): NftablesConfig {
  const enabled = general.boolean('nft_sync', false);
  const named = general.list('nft_jails');
  for (const jail of named) {
    if (!JAIL_NAME.test(jail)) general.fail('nft_jails', `${JSON.stringify(jail)} is not a valid jail name`, 'list primary jail names (letters, digits, "-", "_", ".") separated by spaces');
  }
  const jails = named.length > 0 ? [...new Set(named)] : [...syncJails.keys()];
  if (enabled && jails.length === 0) {
    general.fail('nft_jails', 'nft_sync is true but no primary jail feeds the sets ([jails] is empty too)', 'list the primary jails whose bans to enforce, e.g. nft_jails = sshd');
  }
  const hooks = general.list('nft_hook').map((hook) => {
    if (!(NFT_HOOKS as readonly string[]).includes(hook)) general.fail('nft_hook', `${JSON.stringify(hook)} is not input or forward`, 'write input (this host\'s services), forward (traffic it routes), or both separated by a space');
    return hook as NftHook;
  });
  const verdict = general.string('nft_verdict', 'drop');
  if (verdict !== 'drop' && verdict !== 'reject') general.fail('nft_verdict', `${JSON.stringify(verdict)} is not drop or reject`, 'set nft_verdict = drop (silently) or reject (answer with an ICMP error)');
  return {
    enabled,
    jails,
    hooks: hooks.length > 0 ? [...new Set(hooks)] : ['input'],
    verdict,
    ports: general.list('nft_ports').map((entry) => readPortRange(general, entry)),
    reconcileIntervalS: general.seconds('nft_reconcile_interval', 300),
  };
}

function readPortRange(general: SectionReader, entry: string): PortRange {
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(entry);
  const from = Number(match?.[1]);
  const to = match?.[2] === undefined ? from : Number(match[2]);
  if (!match || !(from >= 1 && to <= 65535 && from <= to)) {
    general.fail('nft_ports', `${JSON.stringify(entry)} is not a port or a range of ports`, 'list ports (1-65535) or ranges such as 8000-8100, separated by spaces; leave it empty to block all traffic from banned addresses');
  }
  return { from, to };
}
