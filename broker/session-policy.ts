import type { Socket } from 'node:net';
import type { Client, Subscription } from 'aedes';
import type { BrokerLimits } from '../src/config-security.js';
import { printable } from '../src/event.js';
import type { Refusals } from '../src/refusals.js';
import type { ConnectRefusal } from './access-control.js';
import { ConnectionCounts } from './connection-limits.js';

/**
 * What a session may hold, on top of access-control.ts: no persistent session (Aedes would
 * keep a copy of every QoS 1 message for it while it is away, forever), a few subscriptions
 * per client, and a few connections per account. broker.ts runs these checks around the
 * access rules' hooks.
 */
export class SessionPolicy {
  private readonly perAccount = new ConnectionCounts();
  private readonly subscriptions = new WeakMap<Client, Set<string>>();

  constructor(
    private readonly limits: BrokerLimits,
    private readonly identityOf: (client: Client) => string | undefined,
    private readonly refusals: Refusals,
  ) {}

  /** Before authentication: why this session is refused, if it is. */
  refuseSession(client: Client): ConnectRefusal | undefined {
    if (client.clean) return undefined;
    return { reason: 'persistent-session', code: 5, detail: `client ${printable(client.id)} asked for a persistent session (clean session = false); this broker keeps none: connect with a clean session` };
  }

  /** Once authenticated: takes a place for the client's account, or says why there is none. */
  admitAccount(client: Client): ConnectRefusal | undefined {
    const account = this.identityOf(client);
    const { connectionsPerAccount } = this.limits;
    if (account === undefined || this.perAccount.admit(account, connectionsPerAccount, client.conn as Socket)) return undefined;
    return { reason: 'too-many-connections', code: 3, detail: `account ${JSON.stringify(account)} already holds ${connectionsPerAccount} connections (mq_max_connections_per_account)` };
  }

  /** Before the access rules: false (and counted) when the client holds as many subscriptions as it may. */
  allowsSubscription(client: Client, subscription: Subscription): boolean {
    const held = this.held(client);
    if (held.has(subscription.topic) || held.size < this.limits.subscriptionsPerClient) return true;
    this.refusals.refuse('too-many-subscriptions', `client ${printable(client.id)} already holds ${held.size} subscriptions (mq_max_subscriptions)`, { client: this.identityOf(client) ?? client.id });
    return false;
  }

  subscribed(client: Client, topic: string): void {
    this.held(client).add(topic);
  }

  unsubscribed(client: Client, topics: readonly string[]): void {
    const held = this.subscriptions.get(client);
    for (const topic of topics) held?.delete(topic);
  }

  private held(client: Client): Set<string> {
    let held = this.subscriptions.get(client);
    if (!held) this.subscriptions.set(client, (held = new Set()));
    return held;
  }
}
