import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes, type AedesOptions } from 'aedes';
import { ConfigError } from '../src/config-reader.js';
import type { BrokerSecurity, RateLimit } from '../src/config-security.js';
import type { Logger } from '../src/log.js';
import { Refusals } from '../src/refusals.js';
import { MAX_SNAPSHOT_PART_BYTES } from '../src/snapshot.js';
import { AccessControl, refuseConnection, senderName } from './access-control.js';
import type { ClusterBus } from './cluster.js';
import { coalesceWrites } from './coalesce-writes.js';
import { limitConnectionsPerAddress } from './connection-limits.js';
import { guardPacketSize } from './packet-size-guard.js';
import { QueueBounds, type QueueStats } from './queue-bounds.js';
import { SessionPolicy } from './session-policy.js';

export interface BrokerOptions {
  host: string;
  port: number;
  log: Logger;
  security: BrokerSecurity;
  rateLimit: RateLimit;
  /** A standalone hub instance's bus to the other instances (cluster.ts), started; absent: this broker alone. */
  bus?: ClusterBus;
}

/** Messages through the broker since it started. */
export interface Traffic {
  /** Publishes from this broker's clients that the rules let through. */
  in: number;
  /** Messages written to this broker's subscribers. */
  out: number;
}

export interface RunningBroker {
  readonly host: string;
  readonly port: number;
  readonly aedes: Aedes;
  readonly refusals: Refusals;
  /** Messages dropped for clients whose queue was full, in all and per client. */
  queues(): QueueStats;
  traffic(): Traffic;
  close(): Promise<void>;
}

/** Deeper than f2b/<jail>/<action> has no use; Aedes' default allows 100 levels. */
const MAX_TOPIC_LEVELS = 8;
/** The largest packet any host needs to send: a snapshot part (topic and header included). */
const MAX_PACKET_BYTES = MAX_SNAPSHOT_PART_BYTES + 1024;
/** QoS 2 publishes held per client until their PUBREL; nothing in the fleet uses QoS 2 (Aedes allows 1,000). */
const MAX_INFLIGHT_INBOUND = 32;

/**
 * An Aedes broker on host:port (TLS when configured) that enforces the access rules of
 * access-control.ts and session-policy.ts, bounds what waits for each client
 * (queue-bounds.ts) and never stores a retained message.
 */
export async function startBroker({ host, port, log, security, rateLimit, bus }: BrokerOptions): Promise<RunningBroker> {
  const refusals = new Refusals(log.child({ component: 'broker' }));
  const { limits } = security;
  const access = new AccessControl(security, rateLimit, refusals);
  const session = new SessionPolicy(limits, (client) => access.senderOf(client)?.identity, refusals);
  const queues = new QueueBounds(limits.queueBytesPerClient, (client) => {
    const sender = access.senderOf(client);
    return sender ? senderName(sender) : client.id;
  }, refusals);
  const traffic: Traffic = { in: 0, out: 0 };
  // Every Aedes hook, in one place: each runs its checks in the order written here.
  const hooks: AedesOptions = {
    authenticate(client, username, password, done) {
      const refused = session.refuseSession(client);
      if (refused) return refuseConnection(refusals, client, refused, done);
      access.authenticate(client, username, password, (error, ok) => {
        const overLimit = ok ? session.admitAccount(client) : undefined;
        if (overLimit) return refuseConnection(refusals, client, overLimit, done);
        done(error, ok);
      });
    },
    authorizePublish(client, packet, done) {
      access.authorizePublish(client, packet, (error) => {
        // Aedes 1.x (checked on 1.2.0) acknowledges a QoS 1 publish before it publishes it: a
        // clustered instance first hands it to the other instances (cluster.ts, sendAhead), so
        // that a ban its host saw acknowledged reaches the fleet even if this instance dies
        // right after. test/cluster/acknowledged-publish.test.ts fails if that order changes.
        if (error || !bus || !client || packet.qos === 0) return done(error);
        void bus.sendAhead(packet).then(() => done(null));
      });
    },
    authorizeSubscribe(client, subscription, done) {
      if (!session.allowsSubscription(client, subscription)) return done(null, null); // SUBACK 128
      access.authorizeSubscribe(client, subscription, (error, granted) => {
        if (!error && granted) session.subscribed(client, granted.topic);
        done(error, granted);
      });
    },
    authorizeForward(client, packet) {
      const forwarded = queues.authorizeForward(client, packet);
      if (forwarded) traffic.out += 1;
      return forwarded;
    },
  };
  const aedes = await Aedes.createBroker({
    maxTopicLevels: MAX_TOPIC_LEVELS,
    maxInflightInbound: MAX_INFLIGHT_INBOUND,
    ...hooks,
    ...(bus ? { mq: bus, id: bus.brokerId } : {}),
  });
  // Once let in (just before its CONNACK): a connection refused at login is written to as before.
  aedes.on('client', (client) => coalesceWrites(client.conn as Socket));
  aedes.on('unsubscribe', (topics, client) => session.unsubscribed(client, topics));
  aedes.on('publish', (_packet, client) => {
    if (client) traffic.in += 1;
  });
  aedes.on('clientError', (client, error) => log.debug({ client: client.id, err: error.message }, 'MQTT client error'));
  aedes.on('connectionError', (_client, error) => log.debug({ err: error.message }, 'MQTT connection error'));

  /** Every connection taken: those Aedes does not know yet (no CONNECT) are closed with the broker too. */
  const connections = new Set<Socket>();
  const accept = (socket: Socket) => {
    if (socket.destroyed) return; // refused by the per-address limit
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    if (tls) raiseWriteMark(socket, limits.queueBytesPerClient);
    guardPacketSize(socket, MAX_PACKET_BYTES, (announced) =>
      refusals.refuse('oversized', `packet of ${announced} bytes exceeds ${MAX_PACKET_BYTES}; connection closed`, { remote: socket.remoteAddress }),
    );
    aedes.handle(socket);
  };
  const tls = security.tls ? tlsOptions(security.tls) : undefined;
  let server: Server;
  try {
    // What queue-bounds.ts lets wait for a client must fit below the mark at which a write
    // says "wait for drain" (Node's default is 16 KiB), or it would hold up everyone's delivery.
    server = tls ? createTlsServer(tls, accept) : createServer({ highWaterMark: limits.queueBytesPerClient }, accept);
    // Beyond this Node closes a connection as it comes: the file descriptors the program's own work needs stay free.
    server.maxConnections = limits.connections;
    server.on('drop', (dropped) =>
      refusals.refuse('too-many-connections', `${limits.connections} connections are open (mq_max_connections); a new one was closed`, { remote: dropped?.remoteAddress }),
    );
    limitConnectionsPerAddress(server, limits.connectionsPerAddress, (remote) =>
      refusals.refuse('too-many-connections', `${remote} already holds ${limits.connectionsPerAddress} connections (mq_max_connections_per_address); connection closed`, { remote }),
    );
    if (security.tls) server.on('tlsClientError', (error) => log.debug({ err: error.message }, 'TLS handshake failed'));
    await listen(server, host, port);
  } catch (error) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    refusals.close();
    throw listenFailure(error, host, port);
  }
  // After listening, an error (e.g. EMFILE while accepting) must not end the program.
  server.on('error', (error: Error) => log.warn({ err: error.message }, 'MQTT listener: a connection failed'));
  const listening = { host, port, tls: Boolean(security.tls), clientCertificates: Boolean(security.tls?.clientCa), accounts: security.users.size };
  if (security.users.size || security.tls?.clientCa) log.info(listening, 'MQTT broker listening; authentication required');
  else if (isLoopback(host)) log.info(listening, 'MQTT broker listening on loopback; anonymous access');
  else {
    log.warn(listening, `MQTT broker listening with anonymous access: anyone who reaches ${host}:${port} can ban and unban; add [users] (see docs/security.md) or firewall the port`);
  }

  return {
    host,
    port,
    aedes,
    refusals,
    queues: () => queues.stats(),
    traffic: () => ({ ...traffic }),
    async close() {
      // No new connection from here on: one taken while Aedes closed (a peer reconnecting), or
      // one that never sent CONNECT, would hold the server open until Aedes's connect timeout.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      for (const socket of connections) socket.destroy();
      await closed;
      refusals.close();
    },
  };
}

function tlsOptions(tls: NonNullable<BrokerSecurity['tls']>) {
  return {
    cert: tls.cert,
    key: tls.key,
    ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
    minVersion: 'TLSv1.2' as const,
  };
}

function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.');
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * The write mark of a TLS socket (see the plain server's highWaterMark option above):
 * tls.createServer builds its sockets itself and passes no such option on, so the mark is
 * set in Node's internal writable state (checked on Node 20.20). If Node moves it, this stops
 * taking effect: test/security/write-mark.test.ts fails then.
 */
function raiseWriteMark(socket: Socket, bytes: number): void {
  (socket as unknown as { _writableState: { highWaterMark: number } })._writableState.highWaterMark = bytes;
}

/** Why the broker cannot listen: what, and the fix when the config can fix it. */
export interface ListenProblem {
  what: string;
  fix?: string;
}

/** Whether mq_ip:mq_port can be listened on (for --check): undefined when it can, else why start-up would stop. */
export async function listenProblem(host: string, port: number): Promise<ListenProblem | undefined> {
  const server = createServer();
  try {
    await listen(server, host, port);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return undefined;
  } catch (error) {
    return listenCause(error, host, port);
  }
}

/**
 * A port in use, an address this host does not have or a privileged port are the admin's
 * to fix in the config (exit 78: restarting would not help); anything else is a failure.
 */
function listenFailure(error: unknown, host: string, port: number): Error {
  if (error instanceof ConfigError) return error;
  const { what, fix } = listenCause(error, host, port);
  return fix === undefined ? new Error(what) : new ConfigError(`${what}; fix: ${fix}`);
}

function listenCause(error: unknown, host: string, port: number): ListenProblem {
  const code = (error as NodeJS.ErrnoException).code;
  const what = `broker cannot listen on ${host}:${port}: `;
  switch (code) {
    case 'EADDRINUSE':
      return { what: `${what}the port is already in use (another syncfail2ban agent or broker?)`, fix: 'stop that program, or change mq_port (or mq_ip)' };
    case 'EADDRNOTAVAIL':
      return { what: `${what}no interface on this host has that address`, fix: "set mq_ip to one of this host's addresses" };
    case 'EACCES':
      return { what: `${what}permission denied`, fix: 'use an mq_port above 1023, or give the service CAP_NET_BIND_SERVICE' };
    default:
      return { what: `${what}${(error as Error).message}` };
  }
}
