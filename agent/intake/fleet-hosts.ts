import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Config } from '../../src/config.js';
import { mustParseAddress } from '../../src/ip.js';
import type { Logger } from '../../src/log.js';
import type { PartStatus } from '../../src/status.js';
import { fleetHosts, protectFleetAddresses, type FleetHost, type NeverBanList } from '../../src/never-ban.js';
import type { Part } from '../../src/part.js';

const REFRESH_MS = 10 * 60_000;
const LOOKUP_TIMEOUT_MS = 5_000;

/**
 * Keeps every address of the fleet's own hosts (sync_servers, the broker_url host, the
 * opn_fw_ip firewalls) on the never-ban list: addresses at once, names as they resolve now
 * and every ten minutes (a name that does not resolve is protected once it does).
 */
export class FleetHostProtection implements Part {
  private timer: NodeJS.Timeout | undefined;
  /** host name -> why it is protected, while it does not resolve */
  private readonly unresolved = new Map<string, string>();
  private readonly hosts: FleetHost[];

  constructor(
    config: Config,
    private readonly neverBan: NeverBanList,
    private readonly log: Logger,
  ) {
    this.hosts = fleetHosts(config);
    protectFleetAddresses(neverBan, this.hosts);
  }

  async start(): Promise<void> {
    await this.resolveNames();
    this.timer = setInterval(() => void this.resolveNames(), REFRESH_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
  }

  /** A fleet host whose name does not resolve can be banned: a problem until it resolves. */
  status(): PartStatus {
    return {
      kind: 'fleet_hosts',
      problems: [...this.unresolved].map(([host, why]) => ({
        what: `${host} (${why}) does not resolve, so its addresses are not protected from bans`,
        fix: `make ${host} resolvable on this host (DNS or /etc/hosts), or write its address instead`,
      })),
      measures: {},
      details: { protected: this.hosts.map(({ host }) => host).join(' ') || 'none' },
    };
  }

  private async resolveNames(): Promise<void> {
    const names = this.hosts.filter(({ host }) => !isIP(host));
    await Promise.all(names.map(async ({ host, why }) => {
      try {
        const found = await withTimeout(lookup(host, { all: true }), LOOKUP_TIMEOUT_MS);
        this.neverBan.protect(host, found.map(({ address }) => mustParseAddress(address.split('%')[0]!)), `${why} (${host})`);
        this.unresolved.delete(host);
      } catch (error) {
        if (this.unresolved.has(host)) return;
        this.unresolved.set(host, why);
        this.log.warn({ host }, `cannot resolve ${host} (${why}): ${(error as Error).message}; its addresses are not protected from bans until it resolves`);
      }
    }));
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
