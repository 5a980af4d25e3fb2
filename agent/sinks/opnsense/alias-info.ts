import type { Logger } from '../../../src/log.js';
import { OpnsenseError, PRIVILEGE_NAMES, type OpnsenseClient } from './api/client.js';

/**
 * 'missing': no alias of that name in config; 'unknown': the API user may not read config
 * (neither "Firewall: Aliases" nor "Firewall: Alias: Edit"), so the type cannot be checked.
 */
export type AliasKind = 'external' | 'host' | 'network' | 'other' | 'missing' | 'unknown';

export interface AliasInfo {
  kind: AliasKind;
  /** OPNsense's type name ('urltable', 'geoip', …); '' when not known. */
  type: string;
  enabled: boolean;
  /** External aliases with `expire` age their entries out. */
  expire: number | null;
  /** Config UUID, needed to read and write config; null when unknown. */
  uuid: string | null;
  /** False once the bulk path (set_item + reconfigure) failed for this alias, until the next clear(). */
  bulk: boolean;
}

/** Whether the bridge may write to an alias, and what to tell the admin. */
export interface AliasVerdict {
  usable: boolean;
  /** Why the alias is refused, with the fix (usable false). */
  problem?: string;
  /** What works with a caveat the admin should know about (usable true). */
  caveat?: string;
}

const UNKNOWN: AliasInfo = { kind: 'unknown', type: '', enabled: true, expire: null, uuid: null, bulk: false };

/**
 * Type, state and UUID of the aliases of one firewall, read through the alias (config) API.
 * Cleared by every reconciliation, so a changed alias or a newly granted privilege is picked up.
 */
export class AliasInfoCache {
  private readonly cache = new Map<string, AliasInfo>();
  /** alias -> why the bulk path was refused, until the next clear(). */
  private readonly bulkRefusals = new Map<string, string>();
  private configApiDenied = false;
  private warned = false;

  constructor(
    private readonly client: OpnsenseClient,
    private readonly log: Logger,
  ) {}

  async get(alias: string): Promise<AliasInfo> {
    const cached = this.cache.get(alias);
    if (cached) return cached;
    if (this.configApiDenied) return UNKNOWN;
    let info: AliasInfo;
    try {
      const uuid = await this.client.getAliasUuid(alias);
      const item = uuid === null ? null : await this.client.getAliasItem(uuid, alias);
      info =
        item === null || uuid === null
          ? { ...UNKNOWN, kind: 'missing' }
          : {
              kind: kindOf(item.type),
              type: item.type,
              enabled: item.enabled,
              expire: item.expire,
              uuid,
              bulk: true,
            };
    } catch (error) {
      if (!(error instanceof OpnsenseError) || (error.kind !== 'forbidden' && error.kind !== 'not_found')) throw error;
      this.configApiDenied = true;
      if (!this.warned) {
        this.warned = true;
        this.log.warn(
          { firewall: this.client.firewall, alias },
          `${error.message}. Without reading alias config the bridge cannot check that each alias has a type that keeps what it adds, and bursts to Host(s)/Network(s) aliases go one address per call; grant ${PRIVILEGE_NAMES.alias_read}`,
        );
      }
      return UNKNOWN;
    }
    this.cache.set(alias, info);
    return info;
  }

  /**
   * The bulk path failed for this alias: until the next clear(), it is not written in bulk.
   * `refusal`: the firewall refused it (a problem with the alias, shown in status meanwhile).
   */
  avoidBulk(alias: string, refusal?: string): void {
    const info = this.cache.get(alias);
    if (info) this.cache.set(alias, { ...info, bulk: false });
    if (refusal !== undefined) this.bulkRefusals.set(alias, refusal);
  }

  /** Why the firewall refused the bulk path for this alias since the last clear(), or null. */
  bulkRefusal(alias: string): string | null {
    return this.bulkRefusals.get(alias) ?? null;
  }

  clear(): void {
    this.cache.clear();
    this.bulkRefusals.clear();
    this.configApiDenied = false;
  }
}

/** What the bridge makes of an alias's type and state (see docs/opnsense.md, "Setting up OPNsense"). */
export function judgeAlias(firewall: string, alias: string, info: AliasInfo): AliasVerdict {
  const where = `OPNsense ${firewall}: alias "${alias}"`;
  const fix = `in Firewall: Aliases, make ${alias} an enabled alias of type External (advanced) (or Host(s)/Network(s)), or map the jail to such an alias in [opn_aliases]`;
  if (info.kind === 'missing') {
    return { usable: false, problem: `${where} does not exist on the firewall; create it (type External (advanced) suits ban lists), names are case-sensitive` };
  }
  if (info.kind === 'other') {
    return {
      usable: false,
      problem: `${where} has type "${info.type}", which does not keep what is added (URL tables, GeoIP and network groups are rebuilt from their source, port and MAC aliases hold no addresses); nothing is written to it: ${fix}`,
    };
  }
  if (!info.enabled) return { usable: false, problem: `${where} is disabled, so no rule uses what is added; nothing is written to it: ${fix}` };
  if (info.kind === 'external' && info.expire !== null) {
    return {
      usable: true,
      caveat: `${where} has expire = ${info.expire} s: pf drops its entries after that time although the bans still hold; they come back at the next reconciliation. Clear expire on the alias so bans last as long as fail2ban's`,
    };
  }
  if (info.kind === 'host' || info.kind === 'network') {
    return {
      usable: true,
      caveat: `${where} is a ${info.kind === 'host' ? 'Host(s)' : 'Network(s)'} alias: every change is a config save (and a config backup), one entry OPNsense refuses blocks every change to it, and bulk writes may race edits made in the GUI meanwhile; External (advanced) is recommended`,
    };
  }
  return { usable: true };
}

function kindOf(type: string): AliasKind {
  return type === 'external' || type === 'host' || type === 'network' ? type : 'other';
}
