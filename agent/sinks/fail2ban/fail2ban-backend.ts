import { Fail2banError, type Fail2banClient } from '../../../src/fail2ban/client.js';
import type { Logger } from '../../../src/log.js';
import { shippedFile } from '../../../src/shipped-file.js';
import type { Problem } from '../../../src/status.js';
import type { Change } from '../../fleet/projection.js';
import { addressList, groupByTarget, type Backend, type Rejection } from '../batcher.js';

/** How to fix a sync jail fail2ban does not run (or refuses changes to). */
export function missingSyncJailFix(jail: string): string {
  return `define [${jail}] in fail2ban's jail.local (see ${shippedFile('etc/fail2ban/jail.local')}), run "fail2ban-client reload", then re-send with syncfail2ban-client -f <jail> on the other hosts`;
}

/** Applies batches to the local sync jails: one banip and one unbanip command per jail. */
export class Fail2banBackend implements Backend {
  readonly name = 'fail2ban';

  constructor(
    private readonly client: Fail2banClient,
    private readonly log: Logger,
  ) {}

  async apply(batch: Change[]): Promise<Rejection[]> {
    let retryable: Error | undefined;
    const rejections: Rejection[] = [];
    for (const [jail, { ban, unban, changes }] of groupByTarget(batch)) {
      try {
        const banned = ban.length > 0 ? await this.client.banIps(jail, ban) : 0;
        const unbanned = unban.length > 0 ? await this.client.unbanIps(jail, unban) : 0;
        this.log.info(
          { sink: this.name, jail, bans: ban.length, unbans: unban.length, newlyBanned: banned, unbanned },
          `applied ${ban.length} ban(s)${addressList(ban)} and ${unban.length} unban(s)${addressList(unban)} to sync jail ${jail}`,
        );
      } catch (error) {
        // A jail fail2ban refuses (it does not exist) must not hold back the other jails forever.
        if (!(error instanceof Fail2banError && error.kind === 'rejected')) {
          retryable ??= error as Error;
          continue;
        }
        const problem: Problem = { what: `fail2ban refuses changes to sync jail ${jail}: ${error.message}`, fix: missingSyncJailFix(jail) };
        this.log.error({ sink: this.name, jail, dropped: changes.length }, `${problem.what}; ${changes.length} change(s) dropped; fix: ${problem.fix}`);
        for (const change of changes) rejections.push({ change, problem });
      }
    }
    // Retried whole: the jails that went through take the same commands again harmlessly.
    if (retryable) throw retryable;
    return rejections;
  }
}
