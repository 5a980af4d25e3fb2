import { createConnection } from 'node:net';
import { connect, MqttClient, type IClientOptions } from 'mqtt';

/** Resolves with `client` once it has connected; rejects on its first error. */
function whenConnected(client: MqttClient): Promise<MqttClient> {
  return new Promise((resolve, reject) => client.once('connect', () => resolve(client)).once('error', reject));
}

/** An MQTT.js client connected to `url`: clean session, no reconnection unless `options` say otherwise. */
export function connectedClient(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  return whenConnected(connect(url, { clean: true, reconnectPeriod: 0, ...options }));
}

/** An MQTT.js client connected to the plain-TCP broker at `url` from `localAddress` (brokers and agents limit each sender address on its own). */
export function connectedFrom(url: string, localAddress: string): Promise<MqttClient> {
  const { hostname, port } = new URL(url);
  return whenConnected(new MqttClient(() => createConnection({ host: hostname, port: Number(port), localAddress }), { reconnectPeriod: 0 }));
}
