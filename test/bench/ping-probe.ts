import { parentPort, workerData } from 'node:worker_threads';
import { RawMqtt } from '../support/raw-mqtt.js';

/**
 * A worker thread that pings a broker (MQTT PINGREQ, answered on the broker's event loop) every
 * `gapMs`, one ping at a time, until told 'stop'; then posts the longest answer in ms: the longest
 * the broker's process was blocked, within `gapMs`. In a thread of its own, so that the bench's own
 * work (parsing the agent's log and status) never delays a ping's timing.
 */
const { host, port, localAddress, gapMs } = workerData as { host: string; port: number; localAddress: string; gapMs: number };
const PINGREQ = Buffer.from([0xc0, 0x00]);

const mqtt = await RawMqtt.open({ host, port, localAddress });
mqtt.connect({ clientId: `bench-probe-${process.pid}` });
if ((await mqtt.connack()) !== 0) throw new Error(`the probe could not connect to the broker on ${host}:${port}`);
let running = true;
parentPort!.once('message', () => (running = false));
parentPort!.postMessage('ready');
let longest = 0;
while (running) {
  const started = performance.now();
  const answered = new Promise((resolve) => mqtt.socket.once('data', resolve));
  mqtt.socket.write(PINGREQ);
  await answered;
  longest = Math.max(longest, performance.now() - started);
  await new Promise((resolve) => setTimeout(resolve, gapMs));
}
await mqtt.close();
parentPort!.postMessage(longest);
