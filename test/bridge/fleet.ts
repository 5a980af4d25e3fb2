/** Helpers for the OPNsense bridge end-to-end tests: bridge config lines, a barrier through the bridge. */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FakeApiKey, FakeOpnsense } from '../fakes/opnsense.js';
import { run } from '../support/run.js';
import { waitFor } from '../support/wait.js';

export interface FirewallAccess {
  fake: FakeOpnsense;
  key: FakeApiKey;
  /** The secret written in the config, when it should not be the fake's (wrong credentials). */
  secret?: string;
}

/** How opn_fw_ip names a fake (address:port, https by default) and [opn_keys] prefixes its keys. */
export function entryOf(fake: FakeOpnsense): string {
  return `${fake.host}:${fake.port}`;
}

/**
 * [default] lines and sections that turn the bridge on, with the original's keys; the
 * fakes' self-signed certificates go into one CA bundle for opn_ca_file.
 */
export async function bridgeConfig(options: {
  dir: string;
  firewalls: FirewallAccess[];
  aliases: Record<string, string>;
  reconcileS: number;
}): Promise<{ extra: string[]; sections: string[]; stateDir: string }> {
  const { dir, firewalls, aliases, reconcileS } = options;
  const caFile = join(dir, 'opnsense-ca.pem');
  await writeFile(caFile, (await Promise.all(firewalls.map(({ fake }) => readFile(fake.caCertPath!, 'utf8')))).join(''));
  const stateDir = join(dir, 'state');
  return {
    stateDir,
    extra: [
      'opn_fw_sync = true',
      `opn_fw_ip = ${firewalls.map(({ fake }) => entryOf(fake)).join(' ')}`,
      'opn_verify = true',
      `opn_ca_file = ${caFile}`,
      `opn_reconcile_interval = ${reconcileS}`,
      `state_dir = ${stateDir}`,
    ],
    sections: [
      '[opn_aliases]',
      ...Object.entries(aliases).map(([jail, alias]) => `${jail} = ${alias}`),
      '',
      '[opn_keys]',
      ...firewalls.flatMap(({ fake, key, secret }) => [`${entryOf(fake)}_key = ${key.key}`, `${entryOf(fake)}_secret = ${secret ?? key.secret}`]),
    ],
  };
}

export function inAlias(fakes: FakeOpnsense[], alias: string, address: string): boolean {
  return fakes.every((fake) => fake.pfTable(alias).includes(address));
}

export function notInAlias(fakes: FakeOpnsense[], alias: string, address: string): boolean {
  return fakes.every((fake) => !fake.pfTable(alias).includes(address));
}

let markers = 0;

/**
 * Proves that the bridge has handled everything published to `broker` before this call: a
 * fresh manual ban published afterwards travels the same subscription (MQTT keeps order
 * per connection), so once it shows in the alias, the earlier events were taken in.
 */
export async function bridgeBarrier(broker: { host: string; port: number }, fakes: FakeOpnsense[], alias: string, jail = 'sshd'): Promise<void> {
  markers += 1;
  const marker = `198.19.${Math.floor(markers / 250)}.${(markers % 250) + 1}`;
  const result = await run('mosquitto_pub', ['-h', broker.host, '-p', String(broker.port), '-q', '1', '-t', `f2b/${jail}/ban`, '-m', marker]);
  if (result.code !== 0) throw new Error(`mosquitto_pub failed: ${result.stderr}`);
  await waitFor(() => inAlias(fakes, alias, marker), `bridge barrier ${marker} in alias ${alias}`);
}
