import { connect as connectTcp, isIP, type Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { urlHostname } from '../src/config.js';
import { DEFAULT_BROKER_LIMITS } from '../src/config-security.js';
import { DISCONNECT, encodeConnect, encodePublish, PacketReader } from './mqtt-codec.js';

export interface Message {
  topic: string;
  payload: string | Buffer;
}

export interface PublishOptions {
  timeoutMs: number;
  /** Give up sooner when the broker has not accepted the connection (CONNACK) by then, retries included. */
  connectTimeoutMs?: number;
  username?: string;
  password?: string;
  /** For mqtts:// brokers. */
  tls?: ConnectionOptions;
  /** QoS 1 messages awaiting PUBACK at once (default WINDOW). */
  window?: number;
  /** At least this long between two messages (default 0); the deadline grows by as much per message. */
  spacingMs?: number;
  /** Payload bytes sent before the spacing starts (default 0: every message is spaced). */
  burstBytes?: number;
}

/** The broker answered, but refused this client's connection (credentials, client id). */
export class ConnectionRefused extends Error {
  override readonly name = 'ConnectionRefused';

  constructor(
    message: string,
    /** The CONNACK return code: 3 is "server unavailable" (try again), the others are final. */
    readonly returnCode: number,
  ) {
    super(message);
  }
}

/** QoS 1 messages awaiting PUBACK at once; also keeps message ids (16 bits) unique. */
const WINDOW = 500;
/**
 * Snapshot parts (up to 64 KiB each) in flight at once: few enough that a broker forwards
 * them to its subscribers as they come (mosquitto queues at most 1,000 messages and 20 in
 * flight per subscriber by default), and each part's round trip overlaps the next ones.
 */
export const SNAPSHOT_WINDOW = 4;
/**
 * Beyond the burst, at least this long between two parts: a broker acknowledges a part as
 * soon as it has queued it for the subscribers, not once they took it, so unpaced parts
 * would pile up ahead of a subscriber that is busy for a moment, beyond the broker's
 * per-client queue (on syncfail2ban's brokers mq_max_queued_kib, 8 MiB by default). Ten
 * parts a second is still far faster than fail2ban takes bans in.
 */
export const SNAPSHOT_SPACING_MS = 100;

/**
 * The first parts of a snapshot, up to half of the per-client queue of the broker -f
 * publishes to, go unpaced: even a subscriber that reads none of them while they come has
 * room for them all and half its queue to spare, and a snapshot of 100,000 IPv4 bans
 * (1.5 to 2 MiB) reaches peers without waiting 2 to 3 s for the spacing. `queueBytes` is
 * this host's mq_max_queued_kib: its own broker's in a mesh; a hub's is at least the default.
 */
export function snapshotBurstBytes(queueBytes: number): number {
  return Math.min(queueBytes, DEFAULT_BROKER_LIMITS.queueBytesPerClient) / 2;
}

const CONNACK_CODES: Record<number, string> = {
  1: 'the broker does not speak MQTT 3.1.1',
  2: 'the broker rejected the client id',
  3: 'the broker is unavailable',
  4: 'bad user name or password (mqtt_username / mqtt_password)',
  5: 'not authorised (check the broker account)',
};

/**
 * Publishes messages with QoS 1 over one MQTT 3.1.1 connection and resolves once the
 * broker has acknowledged every one. Not MQTT.js, which takes ~190 ms to load, because
 * syncfail2ban-client runs once per ban.
 * Never waits past the deadline (fail2ban must not hang on its action); until then, a
 * broker that answers "server unavailable" (its login checks are busy) is tried again.
 */
export async function publishAll(url: string, messages: Message[], options: PublishOptions): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const connectDeadline = Math.min(deadline, Date.now() + (options.connectTimeoutMs ?? options.timeoutMs));
  for (let attempt = 1; ; attempt++) {
    try {
      return await publishOnce(url, messages, options, deadline, connectDeadline);
    } catch (error) {
      const pause = Math.min(1_000, 50 * 2 ** attempt) * (0.5 + Math.random());
      if (!(error instanceof ConnectionRefused && error.returnCode === 3) || Date.now() + pause >= connectDeadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}

async function publishOnce(url: string, messages: Message[], options: PublishOptions, deadline: number, connectDeadline: number): Promise<void> {
  const target = new URL(url);
  const port = Number(target.port) || (target.protocol === 'mqtts:' ? 8883 : 1883);
  const host = urlHostname(target);
  // node:tls (and the crypto it pulls in) only when needed: loading them is a good part of a plain start-up.
  const socket: Socket =
    target.protocol === 'mqtts:'
      ? (await import('node:tls')).connect({ host, port, ...(isIP(host) ? {} : { servername: host }), ...options.tls })
      : connectTcp({ host, port });

  return new Promise<void>((resolve, reject) => {
    const reader = new PacketReader();
    let next = 0;
    let acknowledged = 0;
    const spacingMs = options.spacingMs ?? 0;
    const pacing = new Pacing(spacingMs, options.burstBytes);
    let paced: NodeJS.Timeout | undefined;
    const inFlight = new Set<number>();
    let finished = false;
    const timer = setTimeout(
      () => finish(new Error(`no answer from the broker at ${url} within ${options.timeoutMs} ms (${acknowledged}/${messages.length} acknowledged)`)),
      deadline - Date.now() + messages.length * (1 + spacingMs),
    );
    const connectTimer =
      connectDeadline < deadline
        ? setTimeout(() => finish(new Error(`the broker at ${url} did not accept the connection within ${Math.round(options.connectTimeoutMs!)} ms`)), connectDeadline - Date.now())
        : undefined;

    const finish = (error?: Error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearTimeout(connectTimer);
      clearTimeout(paced);
      socket.removeAllListeners();
      socket.on('error', () => undefined);
      if (error) {
        socket.destroy();
        reject(error);
        return;
      }
      socket.end(DISCONNECT, () => resolve());
    };

    const send = () => {
      while (next < messages.length && inFlight.size < (options.window ?? WINDOW)) {
        const { topic, payload } = messages[next]!;
        const size = Buffer.byteLength(payload);
        const wait = pacing.wait(size, Date.now());
        if (wait > 0) {
          paced ??= setTimeout(() => {
            paced = undefined;
            send();
          }, wait);
          return;
        }
        pacing.sent(size, Date.now());
        const messageId = (next++ % 65_535) + 1;
        inFlight.add(messageId);
        socket.write(encodePublish(topic, payload, messageId));
      }
      if (acknowledged === messages.length) finish();
    };

    socket.on('data', (chunk: Buffer) => {
      let packets;
      try {
        packets = reader.push(chunk);
      } catch (error) {
        return finish(new Error(`the broker at ${url} sent something that is not MQTT: ${(error as Error).message}`));
      }
      for (const packet of packets) {
        if (finished) return;
        if (packet.type === 'connack') {
          clearTimeout(connectTimer);
          if (packet.returnCode) return finish(new ConnectionRefused(`the broker at ${url} refused the connection: ${CONNACK_CODES[packet.returnCode] ?? `code ${packet.returnCode}`}`, packet.returnCode));
          send();
        } else if (packet.type === 'puback' && inFlight.delete(packet.messageId)) {
          acknowledged += 1;
          send();
        }
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => finish(new Error(`cannot publish to the broker at ${url}: ${describe(error)}`, { cause: error })));
    socket.on('close', () => finish(new Error(`the broker at ${url} closed the connection (${acknowledged}/${messages.length} acknowledged)`)));
    socket.once(target.protocol === 'mqtts:' ? 'secureConnect' : 'connect', () => {
      socket.write(
        encodeConnect({
          // Unique enough to avoid a take-over between concurrent clients; nothing secret depends on it.
          clientId: `sf2b-cli-${Math.random().toString(36).slice(2, 12)}`,
          keepaliveS: 30,
          ...(options.username !== undefined ? { username: options.username } : {}),
          ...(options.password !== undefined ? { password: options.password } : {}),
        }),
      );
    });
  });
}

/** When each message may go: the first `burstBytes` of payload at once, then one every `spacingMs`. */
export class Pacing {
  private last = -Infinity;
  private unpaced: number;

  constructor(
    private readonly spacingMs: number,
    burstBytes = 0,
  ) {
    this.unpaced = burstBytes;
  }

  /** Milliseconds until a message of `size` bytes may go (0 or less: now). */
  wait(size: number, now: number): number {
    return size <= this.unpaced ? 0 : this.last + this.spacingMs - now;
  }

  /** It went at `now`: the burst ends with the first message that did not fit in what was left of it. */
  sent(size: number, now: number): void {
    this.last = now;
    this.unpaced = size <= this.unpaced ? this.unpaced - size : 0;
  }
}

function describe(error: NodeJS.ErrnoException): string {
  if (error.code === 'ECONNREFUSED') return 'connection refused (is the syncfail2ban agent or broker running there? are mq_ip/mq_port or broker_url right?)';
  if (error.code === 'ENOTFOUND') return 'host name not found';
  return error.message;
}
