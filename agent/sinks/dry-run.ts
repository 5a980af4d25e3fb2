import type { Logger } from '../../src/log.js';
import type { Change } from '../fleet/projection.js';
import { addressList, groupByTarget, type Backend, type Rejection } from './batcher.js';

/** In place of a real backend with dry_run = true: logs what it would apply, one line per batch, and changes nothing. */
export class DryRunBackend implements Backend {
  constructor(
    readonly name: string,
    private readonly log: Logger,
  ) {}

  async apply(batch: Change[]): Promise<Rejection[]> {
    const parts = [...groupByTarget(batch)].map(
      ([target, { ban, unban }]) => `${target}: ${ban.length} ban(s)${addressList(ban)}, ${unban.length} unban(s)${addressList(unban)}`,
    );
    this.log.info({ sink: this.name, dryRun: true, changes: batch.length }, `dry run: would apply to ${this.name} ${parts.join('; ')}`);
    return [];
  }
}
