import { isIPv6 } from 'node:net';
import type { Logger } from '../../../src/log.js';
import type { OpnsenseClient } from './api/client.js';
import { LogThrottle } from '../../../src/log-throttle.js';

/** Each kill makes the firewall parse its whole state table: at most this many at once. */
const KILLS_AT_ONCE = 2;
/** Addresses waiting for their states to be killed; beyond this, new ones are skipped (and counted in the log). */
const MAX_WAITING = 10_000;

/**
 * Kills the open states of newly banned single addresses on ONE firewall, in the background,
 * KILLS_AT_ONCE at a time, so that a burst of bans never waits for them. IPv6 addresses are
 * skipped: OPNsense strips ':' from the filter, which then matches nothing.
 */
export class StateKiller {
  private readonly waiting = new Set<string>();
  private running = 0;
  private stopped = false;
  private readonly throttle = new LogThrottle();

  constructor(
    private readonly client: OpnsenseClient,
    private readonly log: Logger,
  ) {}

  /** Queues the addresses just added (single hosts only: a network filter would cut every state inside it). */
  kill(addresses: readonly string[]): void {
    for (const address of addresses) {
      if (this.stopped || address.includes('/')) continue;
      if (isIPv6(address)) {
        this.log.debug({ firewall: this.client.firewall, address }, `not killing the states of ${address}: OPNsense's kill_states cannot match an IPv6 address (it strips ':' from the filter); new connections are blocked, open ones stay`);
        continue;
      }
      if (this.waiting.size >= MAX_WAITING) {
        const held = this.throttle.pass('full');
        if (held !== null) this.log.warn({ firewall: this.client.firewall }, `more than ${MAX_WAITING} addresses wait for their states to be killed; skipping ${address}${held > 0 ? ` and ${held} more` : ''} (new connections are blocked, open ones stay)`);
        continue;
      }
      this.waiting.add(address);
    }
    while (this.running < KILLS_AT_ONCE && this.waiting.size > 0) {
      this.running += 1;
      void this.work().finally(() => (this.running -= 1));
    }
  }

  stop(): void {
    this.stopped = true;
    this.waiting.clear();
  }

  private async work(): Promise<void> {
    for (const address of this.waiting) {
      this.waiting.delete(address);
      try {
        await this.client.killStates(address);
      } catch (error) {
        if (this.stopped) return; // the connections were closed at stop
        const held = this.throttle.pass('failed');
        if (held === null) continue;
        this.log.warn(
          { firewall: this.client.firewall, address },
          `${(error as Error).message}${held > 0 ? ` (${held} more failure(s) since the last message)` : ''}; the address is blocked for new connections, but open ones were not cut (not retried)`,
        );
      }
      if (this.stopped) return;
    }
  }
}
