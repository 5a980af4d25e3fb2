import type { Socket } from 'node:net';
import type { Aedes, Client } from 'aedes';
import type { BrokerLimits } from '../src/config-security.js';
import { printable } from '../src/event.js';
import type { Refusals } from '../src/refusals.js';
import { refuseConnection } from './access-control.js';
import { ConnectionCounts } from './connection-limits.js';

/**
 * What a session may hold, on top of access-control.ts: no persistent session (Aedes would
 * keep a copy of every QoS 1 message for it while it is away, forever), a few subscriptions
 * per client, and a few connections per account. Wraps the hooks access-control installed.
 */
export function installSessionPolicy(aedes: Aedes, limits: BrokerLimits, identityOf: (client: Client) => string | undefined, refusals: Refusals): void {
  const perAccount = new ConnectionCounts();
  const subscriptions = new WeakMap<Client, Set<string>>();

  const authenticate = aedes.authenticate.bind(aedes);
  aedes.authenticate = (client, username, password, done) => {
    const refuse = (reason: string, code: 3 | 5, detail: string) => refuseConnection(refusals, client, reason, code, detail, done);
    if (!client.clean) {
      return refuse('persistent-session', 5, `client ${printable(client.id)} asked for a persistent session (clean session = false); this broker keeps none: connect with a clean session`);
    }
    authenticate(client, username, password, (error, ok) => {
      const account = ok ? identityOf(client) : undefined;
      if (account !== undefined && !perAccount.admit(account, limits.connectionsPerAccount, client.conn as Socket)) {
        return refuse('too-many-connections', 3, `account ${JSON.stringify(account)} already holds ${limits.connectionsPerAccount} connections (mq_max_connections_per_account)`);
      }
      done(error, ok);
    });
  };

  const authorizeSubscribe = aedes.authorizeSubscribe.bind(aedes);
  aedes.authorizeSubscribe = (client, subscription, done) => {
    const held = subscriptions.get(client) ?? new Set<string>();
    subscriptions.set(client, held);
    if (!held.has(subscription.topic) && held.size >= limits.subscriptionsPerClient) {
      refusals.refuse('too-many-subscriptions', `client ${printable(client.id)} already holds ${held.size} subscriptions (mq_max_subscriptions)`, { client: identityOf(client) ?? client.id });
      return done(null, null); // SUBACK 128
    }
    authorizeSubscribe(client, subscription, (error, granted) => {
      if (!error && granted) held.add(subscription.topic);
      done(error, granted);
    });
  };
  aedes.on('unsubscribe', (topics, client) => {
    const held = subscriptions.get(client);
    for (const topic of topics) held?.delete(topic);
  });
}
