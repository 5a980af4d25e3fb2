import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { Aedes } from 'aedes';
import { readConfiguredFile } from '../src/config-reader.js';
import type { BrokerSecurity, RateLimit } from '../src/config-security.js';
import type { Logger } from '../src/log.js';
import { Refusals } from '../src/refusals.js';
import { installAccessControl } from './access-control.js';
import type { ClusterBus, ClusterOptions } from './cluster.js';
import { guardPacketSize } from './packet-size-guard.js';

export interface BrokerOptions {
  host: string;
  port: number;
  log: Logger;
  security: BrokerSecurity;
  rateLimit: RateLimit;
  /** Standalone hub instances that share their message bus with the others through Redis. */
  cluster?: Omit<ClusterOptions, 'log'>;
}

export interface RunningBroker {
  readonly host: string;
  readonly port: number;
  readonly aedes: Aedes;
  readonly refusals: Refusals;
  readonly cluster: ClusterBus | undefined;
  close(): Promise<void>;
}

/** Deeper than f2b/<jail>/<action> has no use; Aedes' default allows 100 levels. */
const MAX_TOPIC_LEVELS = 8;
/** The largest packet any host needs to send: a CONNECT with credentials, or one event. */
const MAX_PACKET_BYTES = 4096;

/**
 * An Aedes broker on host:port (TLS when configured) that enforces the access rules of
 * access-control.ts and never stores a retained message.
 */
export async function startBroker({ host, port, log, security, rateLimit, cluster: clustered }: BrokerOptions): Promise<RunningBroker> {
  // Loaded only by clustered instances: agents and lone hubs never pay for the Redis client.
  const cluster = clustered ? new (await import('./cluster.js')).ClusterBus({ ...clustered, log }) : undefined;
  const aedes = await Aedes.createBroker({ maxTopicLevels: MAX_TOPIC_LEVELS, ...(cluster ? { mq: cluster, id: cluster.brokerId } : {}) });
  const refusals = new Refusals(log.child({ component: 'broker' }));
  installAccessControl(aedes, security, rateLimit, refusals);
  aedes.on('clientError', (client, error) => log.debug({ client: client.id, err: error.message }, 'MQTT client error'));
  aedes.on('connectionError', (_client, error) => log.debug({ err: error.message }, 'MQTT connection error'));

  const accept = (socket: Socket) => {
    guardPacketSize(socket, MAX_PACKET_BYTES, (announced) =>
      refusals.refuse('oversized', `packet of ${announced} bytes exceeds ${MAX_PACKET_BYTES}; connection closed`, { remote: socket.remoteAddress }),
    );
    aedes.handle(socket);
  };
  const tls = security.tls ? tlsOptions(security.tls) : undefined;
  let server: Server;
  try {
    server = tls ? createTlsServer(tls, accept) : createServer(accept);
    if (security.tls) server.on('tlsClientError', (error) => log.debug({ err: error.message }, 'TLS handshake failed'));
    await listen(server, host, port);
  } catch (error) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    refusals.close();
    throw new Error(`broker cannot listen on ${host}:${port}: ${explainListenError(error as NodeJS.ErrnoException)}`);
  }
  const listening = { host, port, tls: Boolean(security.tls), clientCertificates: Boolean(security.tls?.clientCaFile), accounts: security.users.size };
  if (security.users.size || security.tls?.clientCaFile) log.info(listening, 'MQTT broker listening; authentication required');
  else if (isLoopback(host)) log.info(listening, 'MQTT broker listening on loopback; anonymous access');
  else {
    log.warn(listening, `MQTT broker listening with anonymous access: anyone who reaches ${host}:${port} can ban and unban; add [users] (see the README's Security section) or firewall the port`);
  }

  return {
    host,
    port,
    aedes,
    refusals,
    cluster,
    async close() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
      refusals.close();
    },
  };
}

function tlsOptions(tls: NonNullable<BrokerSecurity['tls']>) {
  return {
    cert: readConfiguredFile('mq_tls_cert', tls.certFile),
    key: readConfiguredFile('mq_tls_key', tls.keyFile),
    ...(tls.clientCaFile ? { ca: readConfiguredFile('mq_tls_client_ca', tls.clientCaFile), requestCert: true, rejectUnauthorized: true } : {}),
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

function explainListenError(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'EADDRINUSE':
      return 'the port is already in use (another syncfail2ban agent or broker?); stop it or change mq_port';
    case 'EADDRNOTAVAIL':
      return 'no interface on this host has that address; fix mq_ip';
    case 'EACCES':
      return 'permission denied; use a port above 1023 or run as root';
    default:
      return error.message;
  }
}
