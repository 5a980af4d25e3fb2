import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { AliasInfoCache } from '../../agent/sinks/opnsense/alias-info.js';
import { OPNSENSE_BATCHER } from '../../agent/sinks/opnsense/firewall-sink.js';
import { FirewallLedger } from '../../agent/sinks/opnsense/ledger.js';
import { AliasWriter, CONCURRENCY } from '../../agent/sinks/opnsense/alias-writer.js';
import { Batcher } from '../../agent/sinks/batcher.js';
import { OpnsenseClient } from '../../agent/sinks/opnsense/api/client.js';
import { FAKE_API_KEY, startFakeOpnsense, type FakeAliasType, type FakeOpnsense } from '../fakes/opnsense.js';
import { waitFor } from '../support/wait.js';
import { timed } from './stats.js';

/** What each request costs on the fake: a LAN round trip plus PHP, and a config save on host aliases. */
const LATENCY_MS = 2;
const CONFIG_SAVE_MS = 2;

const address = (i: number, block: number) => `10.${block}.${Math.floor(i / 256) % 256}.${i % 256}`;
const silent = pino({ level: 'silent' });

function client(fake: FakeOpnsense, maxSockets: number): OpnsenseClient {
  return new OpnsenseClient({ baseUrl: fake.url, key: FAKE_API_KEY.key, secret: FAKE_API_KEY.secret, verifyTls: true, ca: readFileSync(fake.caCertPath!), maxSockets, timeoutMs: 60_000 });
}

/**
 * A burst of bans (a `syncfail2ban-client -f` resync) into one alias of the fake OPNsense
 * over HTTPS: the naive way (one alias_util/add after the other, as the original and the
 * popular action scripts do) against the bridge's Batcher + AliasWriter.
 */
async function scenario(type: FakeAliasType, baselineBans: number, bridgeBans: number): Promise<void> {
  const fake = await startFakeOpnsense({ aliases: [{ name: 'bench', type }] });
  fake.setLatency(LATENCY_MS);
  fake.setConfigSaveMs(CONFIG_SAVE_MS);
  const sequential = client(fake, 1);
  const bridgeClient = client(fake, CONCURRENCY);
  try {
    const baselineMs = await timed(async () => {
      for (let i = 0; i < baselineBans; i++) await sequential.add('bench', address(i, 1));
    });

    fake.resetCounters();
    const ledger = new FirewallLedger(bridgeClient.firewall);
    const backend = new AliasWriter({
      client: bridgeClient,
      holders: () => [],
      ledger,
      aliasInfo: new AliasInfoCache(bridgeClient, silent),
      state: { markDirty() {}, async writeAhead() {} },
      log: silent,
    });
    const sink = new Batcher(backend, silent, OPNSENSE_BATCHER);
    const bridgeMs = await timed(async () => {
      for (let i = 0; i < bridgeBans; i++) sink.submit({ target: 'bench', action: 'ban', address: address(i, 2) });
      await waitFor(() => sink.stats().applied >= bridgeBans, 'the bridge to apply every ban', 300_000, 5);
    });
    await sink.stop(1_000);
    const held = fake.pfTable('bench').length;
    if (held !== baselineBans + bridgeBans) throw new Error(`expected ${baselineBans + bridgeBans} entries, the alias holds ${held}`);

    const baselineRate = (baselineBans / baselineMs) * 1000;
    const bridgeRate = (bridgeBans / bridgeMs) * 1000;
    const requests = Object.entries(fake.requests.byEndpoint).map(([endpoint, count]) => `${endpoint.split('/').pop()} ${count}`).join(', ');
    console.log(`measured: bans per second into ${type === 'external' ? 'an' : 'a'} ${type} alias (fake: ${LATENCY_MS} ms per request${type === 'external' ? '' : `, ${CONFIG_SAVE_MS} ms per config save`}; pf holds ${held} at the end)`);
    console.log(`  baseline, one alias_util/add after the other: ${baselineRate.toFixed(0).padStart(7)}/s over ${baselineBans} bans`);
    console.log(`  bridge (Batcher + AliasWriter):               ${bridgeRate.toFixed(0).padStart(7)}/s over ${bridgeBans} bans, ${(bridgeMs / 1000).toFixed(2)} s (requests: ${requests})`);
    console.log(`  ratio: ${(bridgeRate / baselineRate).toFixed(1)}x`);
  } finally {
    sequential.close();
    bridgeClient.close();
    await fake.close();
  }
}

export async function run(): Promise<void> {
  // External aliases only have alias_util/add: the gain is concurrency over kept-alive connections.
  await scenario('external', 1_000, 10_000);
  // Host aliases: one set_item + reconfigure per batch instead of one config save per address.
  await scenario('host', 300, 10_000);
}
