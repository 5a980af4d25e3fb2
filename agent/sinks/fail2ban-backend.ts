import { Fail2banError, type Fail2banClient } from '../../src/fail2ban/client.js';
import { shippedFile } from '../../src/shipped-file.js';
import type { Logger } from '../../src/log.js';
import type { Backend, Change } from './batcher.js';

/** Applies batches to the local sync jails: one banip and one unbanip command per jail. */
export class Fail2banBackend implements Backend {
  readonly name = 'fail2ban';

  constructor(
    private readonly client: Fail2banClient,
    private readonly log: Logger,
  ) {}

  async apply(batch: Change[]): Promise<void> {
    const byJail = new Map<string, { ban: string[]; unban: string[] }>();
    for (const { target, action, address } of batch) {
      let lists = byJail.get(target);
      if (!lists) byJail.set(target, (lists = { ban: [], unban: [] }));
      lists[action].push(address);
    }
    let retryable: Error | undefined;
    for (const [jail, { ban, unban }] of byJail) {
      try {
        const banned = ban.length > 0 ? await this.client.banIps(jail, ban) : 0;
        const unbanned = unban.length > 0 ? await this.client.unbanIps(jail, unban) : 0;
        this.log.info(
          { sink: this.name, jail, bans: ban.length, unbans: unban.length, newlyBanned: banned, unbanned },
          `applied ${ban.length} ban(s) and ${unban.length} unban(s) to sync jail ${jail}`,
        );
      } catch (error) {
        // A jail fail2ban refuses (it does not exist) must not hold back the other jails forever.
        if (!(error instanceof Fail2banError && error.kind === 'rejected')) {
          retryable ??= error as Error;
          continue;
        }
        this.log.error(
          { sink: this.name, jail, dropped: ban.length + unban.length },
          `${error.message}; ${ban.length + unban.length} change(s) for sync jail ${jail} dropped: add the jail (see ${shippedFile('etc/fail2ban/jail.local')}), reload fail2ban, then re-send with syncfail2ban-client -f on the other hosts`,
        );
      }
    }
    // Retried whole: the jails that went through take the same commands again harmlessly.
    if (retryable) throw retryable;
  }
}
