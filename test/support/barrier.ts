import { run } from './run.js';
import type { SimHost } from './sim-host.js';
import { waitFor } from './wait.js';

let counter = 0;

/**
 * Proves that everything published to `broker` before this call has been processed by
 * `hosts`: a fresh manual ban goes through the same broker connection (MQTT keeps order
 * per connection) and, once it is in every host's sync jail, earlier messages were handled.
 */
export async function barrier(
  broker: { host: string; port: number },
  hosts: SimHost[],
  jail = 'sshd',
  syncJail = 'sshd-sync',
  mosquittoArgs: string[] = [],
): Promise<string> {
  counter += 1;
  const marker = `198.18.${Math.floor(counter / 250)}.${(counter % 250) + 1}`;
  const result = await run('mosquitto_pub', ['-h', broker.host, '-p', String(broker.port), ...mosquittoArgs, '-q', '1', '-t', `f2b/${jail}/ban`, '-m', marker]);
  if (result.code !== 0) throw new Error(`mosquitto_pub failed: ${result.stderr}`);
  await Promise.all(hosts.map((host) => waitFor(async () => (await host.banned(syncJail)).includes(marker), `barrier ${marker} on ${host.name}`)));
  return marker;
}
