import { parseAddress } from '../../../src/ip.js';
import { TABLE } from './nft-script.js';

/** One element of a set as nft lists it. */
export interface ListedElement {
  /** Canonical address text; undefined when the element is not one address or network (a range, say). */
  address?: string;
  /** Seconds until the element expires, when it has a timeout. */
  expiresS?: number;
}

export interface ListedSet {
  type: string;
  flags: string[];
  /** Absent in a terse listing (nft -t). */
  elements?: ListedElement[];
}

export interface ListedRule {
  chain: string;
  /** The set it matches (@name), if any. */
  set?: string;
  packets: number;
  bytes: number;
}

/** What `nft -j list table inet syncfail2ban` says about the table. */
export interface TableListing {
  sets: Map<string, ListedSet>;
  /** chain name -> its hook ('' for a regular chain) */
  chains: Map<string, string>;
  rules: ListedRule[];
}

type Json = Record<string, unknown>;

/** Parses nft's JSON listing of the agent's table; throws when it is not one. */
export function parseTableListing(json: unknown): TableListing {
  const items = (json as { nftables?: unknown } | null)?.nftables;
  if (!Array.isArray(items)) throw new Error('nft -j printed no "nftables" list');
  const listing: TableListing = { sets: new Map(), chains: new Map(), rules: [] };
  for (const item of items as Json[]) {
    const set = item.set as Json | undefined;
    const chain = item.chain as Json | undefined;
    const rule = item.rule as Json | undefined;
    if (set && ours(set)) {
      listing.sets.set(String(set.name), {
        type: String(set.type),
        flags: Array.isArray(set.flags) ? set.flags.map(String) : [],
        ...(Array.isArray(set.elem) ? { elements: set.elem.map(parseElement) } : {}),
      });
    } else if (chain && ours(chain)) {
      listing.chains.set(String(chain.name), typeof chain.hook === 'string' ? chain.hook : '');
    } else if (rule && ours(rule)) {
      listing.rules.push(parseRule(rule));
    }
  }
  return listing;
}

function ours(object: Json): boolean {
  return object.family === 'inet' && object.table === TABLE;
}

function parseElement(entry: unknown): ListedElement {
  const timed = (entry as { elem?: Json } | null)?.elem;
  const value = timed ? timed.val : entry;
  const expires = timed && typeof timed.expires === 'number' ? { expiresS: timed.expires } : {};
  let text: string | undefined;
  if (typeof value === 'string') text = value;
  const prefix = (value as { prefix?: { addr?: unknown; len?: unknown } } | null)?.prefix;
  if (prefix && typeof prefix.addr === 'string' && typeof prefix.len === 'number') text = `${prefix.addr}/${prefix.len}`;
  const parsed = text === undefined ? undefined : parseAddress(text, { anyPrefix: true });
  return { ...(parsed?.ok ? { address: parsed.address.text } : {}), ...expires };
}

function parseRule(rule: Json): ListedRule {
  const expr = Array.isArray(rule.expr) ? (rule.expr as Json[]) : [];
  const counter = expr.find((e) => e.counter)?.counter as { packets?: unknown; bytes?: unknown } | undefined;
  const right = expr.map((e) => (e.match as { right?: unknown } | undefined)?.right).find((r) => typeof r === 'string' && r.startsWith('@')) as string | undefined;
  return {
    chain: String(rule.chain),
    ...(right ? { set: right.slice(1) } : {}),
    packets: typeof counter?.packets === 'number' ? counter.packets : 0,
    bytes: typeof counter?.bytes === 'number' ? counter.bytes : 0,
  };
}
