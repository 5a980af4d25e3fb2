import type { TLSSocket } from 'node:tls';
import type { Aedes, AuthenticateError, Client } from 'aedes';
import type { BrokerSecurity, RateLimit } from '../src/config-security.js';
import { decodeEvent, encodePayload, JAIL_NAME, MAX_PAYLOAD_BYTES, printable, TOPIC_ROOT } from '../src/event.js';
import { RateLimiter } from '../src/rate-limit.js';
import type { Refusals } from '../src/refusals.js';
import { decodeSnapshotEnvelope, MAX_SNAPSHOT_PART_BYTES, MAX_STAMPED_PART_BYTES, SNAPSHOT_ACTION, snapshotPartTokens, stampSnapshotPart } from '../src/snapshot.js';
import { remoteAddress, sourceKey } from './connection-limits.js';
import { PasswordChecker } from './password-checker.js';

/**
 * Who a client is, worked out once when it connects: its account or certificate CN (absent
 * when anonymous), and its source address (IPv6: its /64, as connection limits count it).
 */
export interface Sender {
  identity?: string;
  source: string;
}

/** How the broker names a sender in rate limits, via stamps and queue counts. */
export function senderName(sender: Sender): string {
  return sender.identity ?? sender.source;
}

const PUBLISH_TOPIC = new RegExp(`^${TOPIC_ROOT}/([^/]+)/(ban|unban|banip|unbanip|${SNAPSHOT_ACTION})$`);

/**
 * The broker's rules: who may connect (accounts from [users], client certificates), what
 * they may publish (only f2b/<jail>/<action>, small payloads, snapshot parts of at most
 * 64 KiB, at a bounded rate, and with authentication on, only events and snapshots whose
 * origin is their own identity) and subscribe to
 * (only under f2b/). With authentication on, an event without an origin is stamped with the
 * sender's identity. Breaking a publish rule closes the connection, as MQTT 3.1.1 allows.
 * Its methods are Aedes hooks; broker.ts composes them with the other rules.
 */
export class AccessControl {
  private readonly identities = new WeakMap<Client, Sender>();
  private readonly limiter: RateLimiter;
  private readonly authRequired: boolean;
  private readonly certRequired: boolean;
  private readonly passwords: PasswordChecker;

  constructor(
    private readonly security: BrokerSecurity,
    private readonly rateLimit: RateLimit,
    private readonly refusals: Refusals,
  ) {
    this.limiter = new RateLimiter(rateLimit);
    this.authRequired = security.users.size > 0;
    this.certRequired = security.tls?.clientCa !== undefined;
    this.passwords = new PasswordChecker(security.users);
  }

  /** Who the client is, once authenticate() let it in. */
  senderOf(client: Client): Sender | undefined {
    return this.identities.get(client);
  }

  readonly authenticate: AuthenticateHook = (client, username, password, done) => {
    const refuseConnect = (code: 3 | 4 | 5, detail: string, reason = 'auth-failed') => refuseConnection(this.refusals, client, { reason, code, detail }, done);
    const source = sourceKey(remoteAddress(client));
    const commonNames = this.certRequired ? peerCommonNames(client) : [];
    if (commonNames.length > 1) {
      const names = commonNames.map((name) => printable(name)).join(', ');
      return refuseConnect(5, `client certificate names ${commonNames.length} hosts (CN ${names}); a certificate must have exactly one CN`, 'bad-certificate');
    }
    const commonName = commonNames[0];
    if (this.certRequired && !commonName) return refuseConnect(5, 'client certificate without a common name');
    if (commonName && username !== undefined && username !== commonName) {
      return refuseConnect(5, `user name ${JSON.stringify(username)} does not match certificate CN ${JSON.stringify(commonName)}`);
    }
    if (!this.authRequired) {
      this.identities.set(client, commonName ? { identity: commonName, source } : { source });
      return done(null, true);
    }
    const account = username ?? commonName;
    this.passwords.check(account, password ?? Buffer.alloc(0), source).then(
      (ok) => {
        if (ok === null) return refuseConnect(3, 'too many connection attempts at once; try again shortly');
        if (!ok) return refuseConnect(4, `bad user name or password for ${JSON.stringify(account ?? '')}`);
        this.identities.set(client, { identity: account!, source });
        done(null, true);
      },
      (error: Error) => refuseConnect(4, `password check failed: ${error.message}`),
    );
  };

  readonly authorizePublish: AuthorizePublishHook = (client, packet, done) => {
    const { refusals, rateLimit, security } = this;
    const sender = client ? this.identities.get(client) : undefined;
    const identity = sender?.identity;
    // Rate bucket, via stamp and log name alike: an anonymous IPv6 sender is its /64.
    const who = sender ? senderName(sender) : 'broker';
    const refuse = (reason: string, detail: string) => {
      refusals.refuse(reason, detail, { client: who });
      done(new Error(detail));
    };
    const topic = PUBLISH_TOPIC.exec(packet.topic);
    if (!topic || !JAIL_NAME.test(topic[1]!)) return refuse('bad-topic', `publishing to ${printable(packet.topic)} is not allowed`);
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const snapshot = topic[2] === SNAPSHOT_ACTION;
    const maxBytes = snapshot ? MAX_SNAPSHOT_PART_BYTES : MAX_PAYLOAD_BYTES;
    if (payload.length > maxBytes) return refuse('oversized', `payload of ${payload.length} bytes exceeds ${maxBytes}`);
    if (!this.limiter.take(who, snapshot ? snapshotPartTokens(payload) : 1)) return refuse('rate-limited', `${who} publishes faster than rate_limit ${rateLimit.perSecond}/s (burst ${rateLimit.burst})`);
    packet.retain = false; // delivered live, never stored
    if (snapshot) {
      // Its entries are every agent's to validate (they are not the broker's concern, and cost it 100,000 parses per snapshot).
      const decoded = decodeSnapshotEnvelope(packet.topic, payload);
      // Anonymous: passed on as it came, for every agent to refuse and count.
      if (!decoded.ok && identity === undefined) return done(null);
      if (!decoded.ok) return refuse(decoded.reason, decoded.detail);
      if (identity !== undefined && decoded.header.origin !== identity) return refuse('bad-origin', `${identity} may not publish a snapshot for origin ${JSON.stringify(decoded.header.origin)}`);
      // Stamped as events are, so that agents keep one rate bucket per connection for both.
      const stamped = stampSnapshotPart(payload, who);
      if (stamped.length > MAX_STAMPED_PART_BYTES) return refuse('oversized', `snapshot part of ${stamped.length} bytes once stamped exceeds ${MAX_STAMPED_PART_BYTES}`);
      packet.payload = stamped;
    } else {
      // Parsed exactly as every agent will parse it, so what is checked here is what they apply.
      const decoded = decodeEvent(packet.topic, payload);
      // Anonymous: passed on as it came, for every agent to refuse and count.
      if (!decoded.ok && identity === undefined) return done(null);
      if (!decoded.ok) return refuse(decoded.reason, decoded.detail);
      const { origin, address, bantime } = decoded.event;
      if (identity !== undefined && origin !== undefined && origin !== identity) return refuse('bad-origin', `${identity} may not publish for origin ${JSON.stringify(origin)}`);
      // A bare address from an authenticated host speaks for that host, not for nobody;
      // only an admin account (mq_admins) speaks for the whole fleet.
      const stamped = origin ?? (identity !== undefined && !security.admins.has(identity) ? identity : undefined);
      // Always rewritten: "via" is what this broker saw, never what the sender wrote.
      packet.payload = Buffer.from(encodePayload(address, { origin: stamped, via: who, bantime }));
    }
    done(null);
  };

  readonly authorizeSubscribe: AuthorizeSubscribeHook = (client, subscription, done) => {
    if (subscription.topic === `${TOPIC_ROOT}/#` || subscription.topic.startsWith(`${TOPIC_ROOT}/`)) return done(null, subscription);
    this.refusals.refuse('bad-subscription', `subscribing to ${printable(subscription.topic)} is not allowed`, { client: this.identities.get(client)?.identity ?? client.id });
    done(null, null); // SUBACK 128: refused, connection kept
  };
}

/** Every CN of the client certificate's subject (Node gives an array when there are several). */
function peerCommonNames(client: Client): string[] {
  const socket = client.conn as Partial<TLSSocket>;
  const cn = socket.getPeerCertificate?.()?.subject?.CN;
  return (Array.isArray(cn) ? cn : [cn]).filter((name): name is string => Boolean(name));
}

type AuthenticateHook = Aedes['authenticate'];
type AuthorizePublishHook = Aedes['authorizePublish'];
type AuthorizeSubscribeHook = Aedes['authorizeSubscribe'];
type AuthenticateDone = Parameters<AuthenticateHook>[3];

/** A CONNECT refused with this CONNACK return code (3 unavailable, 4 bad credentials, 5 not authorized). */
export interface ConnectRefusal {
  reason: string;
  code: 3 | 4 | 5;
  detail: string;
}

/** Refuses a CONNECT, counted and logged. */
export function refuseConnection(refusals: Refusals, client: Client, { reason, code, detail }: ConnectRefusal, done: AuthenticateDone): void {
  refusals.refuse(reason, detail, { client: client.id, remote: remoteAddress(client) });
  done(Object.assign(new Error(detail), { returnCode: code }) as AuthenticateError, null);
}
