import { randomBytes } from 'node:crypto';
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import mqttPacket from 'mqtt-packet';

export interface Message {
  topic: string;
  payload: string;
}

export interface PublishOptions {
  timeoutMs: number;
  username?: string;
  password?: string;
  /** For mqtts:// brokers. */
  tls?: ConnectionOptions;
}

/** QoS 1 messages awaiting PUBACK at once; also keeps message ids (16 bits) unique. */
const WINDOW = 500;

const CONNACK_CODES: Record<number, string> = {
  1: 'the broker does not speak MQTT 3.1.1',
  2: 'the broker rejected the client id',
  3: 'the broker is unavailable',
  4: 'bad user name or password (mqtt_username / mqtt_password)',
  5: 'not authorised (check the broker account)',
};

/**
 * Publishes messages with QoS 1 over one MQTT 3.1.1 connection and resolves once the
 * broker has acknowledged every one. Built on mqtt-packet rather than MQTT.js because
 * syncfail2ban-client runs once per ban: this loads in a fraction of MQTT.js's time.
 * Never retries and never waits past the deadline: fail2ban must not hang on its action.
 */
export function publishAll(url: string, messages: Message[], options: PublishOptions): Promise<void> {
  const target = new URL(url);
  const port = Number(target.port) || (target.protocol === 'mqtts:' ? 8883 : 1883);
  const host = target.hostname.replace(/^\[|\]$/g, '');

  return new Promise<void>((resolve, reject) => {
    const socket: Socket =
      target.protocol === 'mqtts:' ? connectTls({ host, port, servername: host, ...options.tls }) : connectTcp({ host, port });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let next = 0;
    let acknowledged = 0;
    const inFlight = new Set<number>();
    const timer = setTimeout(
      () => finish(new Error(`no answer from the broker at ${url} within ${options.timeoutMs} ms (${acknowledged}/${messages.length} acknowledged)`)),
      options.timeoutMs + messages.length,
    );

    const finish = (error?: Error) => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on('error', () => undefined);
      if (error) {
        socket.destroy();
        reject(error);
        return;
      }
      socket.end(mqttPacket.generate({ cmd: 'disconnect' }), () => resolve());
    };

    const send = () => {
      while (next < messages.length && inFlight.size < WINDOW) {
        const messageId = (next % 65_535) + 1;
        const { topic, payload } = messages[next++]!;
        inFlight.add(messageId);
        socket.write(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false, messageId }));
      }
      if (acknowledged === messages.length) finish();
    };

    parser.on('packet', (packet) => {
      if (packet.cmd === 'connack') {
        if (packet.returnCode) return finish(new Error(`the broker at ${url} refused the connection: ${CONNACK_CODES[packet.returnCode] ?? `code ${packet.returnCode}`}`));
        return send();
      }
      if (packet.cmd === 'puback' && packet.messageId !== undefined && inFlight.delete(packet.messageId)) {
        acknowledged += 1;
        send();
      }
    });
    parser.on('error', (error) => finish(new Error(`the broker at ${url} sent something that is not MQTT: ${error.message}`)));
    socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => finish(new Error(`cannot publish to the broker at ${url}: ${describe(error)}`)));
    socket.on('close', () => finish(new Error(`the broker at ${url} closed the connection (${acknowledged}/${messages.length} acknowledged)`)));
    socket.once(target.protocol === 'mqtts:' ? 'secureConnect' : 'connect', () => {
      socket.write(
        mqttPacket.generate({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clean: true,
          keepalive: 30,
          clientId: `sf2b-cli-${randomBytes(6).toString('hex')}`,
          ...(options.username !== undefined ? { username: options.username } : {}),
          ...(options.password !== undefined ? { password: Buffer.from(options.password) } : {}),
        }),
      );
    });
  });
}

function describe(error: NodeJS.ErrnoException): string {
  if (error.code === 'ECONNREFUSED') return 'connection refused (is the syncfail2ban agent or broker running there? are mq_ip/mq_port or broker_url right?)';
  if (error.code === 'ENOTFOUND') return 'host name not found';
  return error.message;
}
