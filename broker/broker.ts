import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import type { Logger } from '../src/log.js';

export interface BrokerOptions {
  host: string;
  port: number;
  log: Logger;
}

export interface RunningBroker {
  readonly host: string;
  readonly port: number;
  readonly aedes: Aedes;
  close(): Promise<void>;
}

/** Deeper than f2b/<jail>/<action> has no use; Aedes' default allows 100 levels. */
const MAX_TOPIC_LEVELS = 8;

/**
 * An Aedes broker on host:port that never stores a retained message: a retained
 * publish is delivered live with the flag cleared, so a later subscriber gets nothing.
 */
export async function startBroker({ host, port, log }: BrokerOptions): Promise<RunningBroker> {
  const aedes = await Aedes.createBroker({ maxTopicLevels: MAX_TOPIC_LEVELS });
  aedes.authorizePublish = (client, packet, done) => {
    if (packet.topic.startsWith('$')) return done(new Error(`publishing to ${packet.topic} is not allowed`));
    if (packet.retain) {
      log.debug({ client: client?.id, topic: packet.topic }, 'retain flag cleared: this broker stores nothing');
      packet.retain = false;
    }
    done(null);
  };
  aedes.on('clientError', (client, error) => log.debug({ client: client.id, err: error.message }, 'MQTT client error'));
  aedes.on('connectionError', (_client, error) => log.debug({ err: error.message }, 'MQTT connection error'));

  const server = createServer((socket) => aedes.handle(socket));
  try {
    await listen(server, host, port);
  } catch (error) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw new Error(`broker cannot listen on ${host}:${port}: ${explainListenError(error as NodeJS.ErrnoException)}`);
  }
  log.info({ host, port }, 'MQTT broker listening');

  return {
    host,
    port,
    aedes,
    async close() {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
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
