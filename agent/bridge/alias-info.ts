import type { Logger } from '../../src/log.js';
import { OpnsenseError, type OpnsenseClient } from './opnsense/client.js';

/** 'unknown': not in config, or the API user may not read config (no "Firewall: Alias: Edit"). */
export type AliasKind = 'external' | 'host' | 'network' | 'other' | 'unknown';

export interface AliasInfo {
  kind: AliasKind;
  /** Config UUID, needed by the bulk path; null when unknown. */
  uuid: string | null;
}

const UNKNOWN: AliasInfo = { kind: 'unknown', uuid: null };

/**
 * Type and UUID of the aliases of one firewall, read through the alias (config) API when
 * the bulk path or a type check needs them. Cleared by every reconciliation, so a changed
 * alias or a newly granted privilege is picked up.
 */
export class AliasInfoCache {
  private readonly cache = new Map<string, AliasInfo>();
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
      info = item === null || uuid === null ? UNKNOWN : { kind: kindOf(item.type), uuid };
    } catch (error) {
      if (!(error instanceof OpnsenseError) || (error.kind !== 'forbidden' && error.kind !== 'not_found')) throw error;
      this.configApiDenied = true;
      if (!this.warned) {
        this.warned = true;
        this.log.warn(
          { firewall: this.client.firewall, alias },
          `${error.message}. Without the alias API, bursts to Host(s)/Network(s) aliases go one address per call (one config save each) and host aliases are not checked for networks`,
        );
      }
      return UNKNOWN;
    }
    this.cache.set(alias, info);
    return info;
  }

  /** set_item refused this alias: until the next clear(), its info has no UUID, so it is not written in bulk. */
  avoidBulk(alias: string): void {
    const info = this.cache.get(alias);
    if (info) this.cache.set(alias, { kind: info.kind, uuid: null });
  }

  clear(): void {
    this.cache.clear();
    this.configApiDenied = false;
  }
}

function kindOf(type: string): AliasKind {
  return type === 'external' || type === 'host' || type === 'network' ? type : 'other';
}
