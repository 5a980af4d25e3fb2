import { execFile } from 'node:child_process';
import type { Config } from '../../src/config.js';
import type { Finding } from './finding.js';
import { Nft, NftError } from '../sinks/nftables/nft.js';
import { parseTableListing } from '../sinks/nftables/nft-listing.js';
import { TABLE, TABLE_SPEC, tableScript } from '../sinks/nftables/nft-script.js';

const SUBJECT = `nftables (table inet ${TABLE})`;

/**
 * What `--check` says about the kernel sets: with nft_sync on, whether nft can build the
 * table as configured (nft --check: validated by the kernel, nothing changed) and whether
 * the table is there; with it off, a table left behind.
 */
export async function checkNftables(config: Config, nft = new Nft({ timeoutMs: config.connectionTimeoutS * 1000 }), systemctl = 'systemctl'): Promise<Finding[]> {
  const { nftables } = config;
  const service = nftables.enabled ? await serviceCapability(systemctl) : undefined;
  return [...(service ? [service] : []), ...(await checkTable(config, nft))];
}

async function checkTable(config: Config, nft: Nft): Promise<Finding[]> {
  const { nftables } = config;
  let listing: unknown;
  try {
    if (nftables.enabled) await nft.run(['--check', '-f', '-'], tableScript(nftables));
    listing = await nft.listJson(TABLE_SPEC, true);
  } catch (error) {
    if (!nftables.enabled) return [];
    if (!(error instanceof NftError)) throw error;
    return [{ level: 'fail', subject: SUBJECT, message: `nft_sync is on but ${error.message}`, fix: error.fix }];
  }
  if (!nftables.enabled) {
    return listing === undefined
      ? []
      : [{ level: 'warn', subject: SUBJECT, message: 'exists while nft_sync is off: the bans in it stay enforced and nothing updates or ends them', fix: 'remove it with "syncfail2ban --remove-nft-table", or set nft_sync = true' }];
  }
  if (listing === undefined) {
    return [{ level: 'warn', subject: SUBJECT, message: 'nft can build it, but it does not exist: no fleet ban is enforced in nftables yet', fix: 'start the agent ("systemctl start syncfail2ban"); it creates the table' }];
  }
  const hooks = [...parseTableListing(listing).chains.values()].filter(Boolean).sort();
  const wanted = [...nftables.hooks].sort();
  if (hooks.join(' ') !== wanted.join(' ')) {
    return [{ level: 'warn', subject: SUBJECT, message: `its chains hook ${hooks.join(' and ') || 'nothing'}, but nft_hook says ${wanted.join(' and ')}`, fix: 'restart or reload the agent ("systemctl reload syncfail2ban"), which rebuilds the chains as configured' }];
  }
  return [{ level: 'ok', subject: SUBJECT, message: `exists and nft can change it; its chains hook ${hooks.join(' and ')} and ${nftables.verdict} what the fleet bans` }];
}

/**
 * Under systemd, whether the service may change nftables: the shipped unit grants no
 * capability, so nft_sync needs CAP_NET_ADMIN added (drop-ins count: systemctl show merges them).
 * Nothing to say without systemd, or without the unit.
 */
function serviceCapability(systemctl: string): Promise<Finding | undefined> {
  return new Promise((resolve) => {
    execFile(systemctl, ['show', '--property=LoadState,CapabilityBoundingSet', 'syncfail2ban.service'], { timeout: 5_000 }, (error, stdout) => {
      const properties = new Map(stdout.split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const));
      if (error || properties.get('LoadState') !== 'loaded') return resolve(undefined);
      const capabilities = (properties.get('CapabilityBoundingSet') ?? '').split(/\s+/);
      resolve(
        capabilities.includes('cap_net_admin')
          ? { level: 'ok', subject: 'unit syncfail2ban.service', message: 'may change nftables (CAP_NET_ADMIN), as nft_sync needs' }
          : {
              level: 'fail',
              subject: 'unit syncfail2ban.service',
              message: 'runs without CAP_NET_ADMIN, so the agent cannot change nftables and nft_sync enforces nothing',
              fix: 'systemctl edit syncfail2ban, add the two lines "[Service]" and "CapabilityBoundingSet=CAP_NET_ADMIN", then systemctl restart syncfail2ban',
            },
      );
    });
  });
}
