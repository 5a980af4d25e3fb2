import type { Logger } from '../../src/log.js';
import type { Change } from '../fleet/projection.js';
import { groupByTarget, type Backend, type Rejection } from './batcher.js';

const ADDRESSES_SHOWN = 20;

/** In place of a real backend with dry_run = true: logs what it would apply, one line per batch, and changes nothing. */
export class DryRunBackend implements Backend {
  constructor(
    readonly name: string,
    private readonly log: Logger,
  ) {}

  async apply(batch: Change[]): Promise<Rejection[]> {
    const parts = [...groupByTarget(batch)].map(
      ([target, { ban, unban }]) => `${target}: ${ban.length} ban(s)${listed(ban)}, ${unban.length} unban(s)${listed(unban)}`,
    );
    this.log.info({ sink: this.name, dryRun: true, changes: batch.length }, `dry run: would apply to ${this.name} ${parts.join('; ')}`);
    return [];
  }
}

function listed(addresses: string[]): string {
  if (addresses.length === 0) return '';
  const more = addresses.length > ADDRESSES_SHOWN ? ` and ${addresses.length - ADDRESSES_SHOWN} more` : '';
  return ` (${addresses.slice(0, ADDRESSES_SHOWN).join(' ')}${more})`;
}
