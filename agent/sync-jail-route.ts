import type { SyncEvent } from '../src/event.js';
import type { SyncJailsSink } from './sinks/sync-jails.js';
import type { Route, RouteResult } from './intake.js';

/** Events of mapped primary jails from other hosts (or manual ones) go into the local sync jail. */
export class SyncJailRoute implements Route {
  readonly name = 'sync-jail';

  constructor(
    private readonly jails: ReadonlyMap<string, string>,
    private readonly nodeId: string,
    private readonly sink: Pick<SyncJailsSink, 'submit'>,
  ) {}

  offer(event: SyncEvent): RouteResult {
    const syncJail = this.jails.get(event.jail);
    if (!syncJail) return 'unmapped';
    if (event.origin === this.nodeId) return 'own';
    this.sink.submit({ target: syncJail, action: event.action, address: event.address.text });
    return 'queued';
  }
}
