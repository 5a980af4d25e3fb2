import { createConnection, type Socket } from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';

export interface RawTarget {
  host: string;
  port: number;
  /** Source address (any 127.x.y.z stands for another machine). */
  localAddress?: string;
}

/**
 * One MQTT connection driven packet by packet, as an attacker would: no library deciding
 * what is sent. Received packets are collected; `paused` stops reading them.
 */
export class RawMqtt {
  readonly received: Packet[] = [];
  readonly closed: Promise<void>;
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });

  private constructor(readonly socket: Socket) {
    this.parser.on('packet', (packet: Packet) => this.received.push(packet));
    socket.on('data', (chunk) => this.parser.parse(chunk));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static open(target: RawTarget): Promise<RawMqtt> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(target, () => {
        socket.off('error', reject);
        resolve(new RawMqtt(socket));
      });
      socket.once('error', reject);
    });
  }

  send(packet: Packet): void {
    this.socket.write(mqttPacket.generate(packet));
  }

  connect(options: { clientId: string; clean?: boolean; username?: string; password?: string }): void {
    this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, keepalive: 60, clean: options.clean ?? true, clientId: options.clientId, ...credentials(options) });
  }

  /** The CONNACK's return code, or null when the broker closed the connection without one. */
  async connack(): Promise<number | null> {
    const packet = (await this.first('connack')) as { returnCode: number } | null;
    return packet?.returnCode ?? null;
  }

  /** The first received packet of this kind, or null when the connection closes first. */
  first(cmd: Packet['cmd']): Promise<Packet | null> {
    const have = this.received.find((packet) => packet.cmd === cmd);
    if (have) return Promise.resolve(have);
    return new Promise((resolve) => {
      const finish = (packet: Packet | null) => {
        this.parser.off('packet', onPacket);
        resolve(packet);
      };
      const onPacket = (packet: Packet) => packet.cmd === cmd && finish(packet);
      this.parser.on('packet', onPacket);
      void this.closed.then(() => finish(null));
    });
  }

  close(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }
}

function credentials(options: { username?: string; password?: string }) {
  return {
    ...(options.username !== undefined ? { username: options.username } : {}),
    ...(options.password !== undefined ? { password: Buffer.from(options.password) } : {}),
  };
}
