import { connect, type IClientOptions, type MqttClient } from 'mqtt';

/** Resolves with `client` once it has connected; rejects on its first error. */
export function whenConnected(client: MqttClient): Promise<MqttClient> {
  return new Promise((resolve, reject) => client.once('connect', () => resolve(client)).once('error', reject));
}

/** An MQTT.js client connected to `url`: clean session, no reconnection unless `options` say otherwise. */
export function connectedClient(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  return whenConnected(connect(url, { clean: true, reconnectPeriod: 0, ...options }));
}
