import { pino } from 'pino';
import { Batcher } from '../../agent/sinks/batcher.js';
import { Fail2banBackend } from '../../agent/sinks/fail2ban/fail2ban-backend.js';
import { Fail2banClient } from '../../src/fail2ban/client.js';
import { startFail2ban } from '../support/fail2ban-server.js';
import { run as runProgram } from '../support/run.js';
import { waitFor } from '../support/wait.js';
import { timed } from './stats.js';

const BASELINE_BANS = 100;
const SINK_BANS = 10_000;

const address = (i: number, block: number) => `10.${block}.${Math.floor(i / 256) % 256}.${i % 256}`;

/**
 * Bans per second into a real sync jail: the original's way (one fail2ban-client process
 * per ban) against the agent's sink (batches over one socket connection).
 */
export async function run(): Promise<void> {
  const server = await startFail2ban({ name: 'bench', jails: [{ name: 'bench-sync', kind: 'sync' }] });
  try {
    const baselineMs = await timed(async () => {
      for (let i = 0; i < BASELINE_BANS; i++) {
        const result = await runProgram('fail2ban-client', ['-s', server.socket, 'set', 'bench-sync', 'banip', address(i, 1)]);
        if (result.code !== 0) throw new Error(result.stderr);
      }
    });

    const client = new Fail2banClient(server.socket, { timeoutMs: 60_000 });
    const sink = new Batcher(new Fail2banBackend(client, pino({ level: 'silent' })), pino({ level: 'silent' }));
    const sinkMs = await timed(async () => {
      for (let i = 0; i < SINK_BANS; i++) sink.submit({ target: 'bench-sync', action: 'ban', address: address(i, 2) });
      await waitFor(() => sink.stats().applied === SINK_BANS, 'the sink to apply every ban', 120_000, 5);
    });
    await sink.stop(1_000);
    await client.close();
    const banned = (await server.banned('bench-sync')).length;
    if (banned !== BASELINE_BANS + SINK_BANS) throw new Error(`expected ${BASELINE_BANS + SINK_BANS} bans, fail2ban holds ${banned}`);

    const baselineRate = (BASELINE_BANS / baselineMs) * 1000;
    const sinkRate = (SINK_BANS / sinkMs) * 1000;
    console.log(`measured: bans per second into a sync jail without actions (fail2ban ${banned} bans at the end)`);
    console.log(`  baseline, one fail2ban-client process per ban (the original): ${baselineRate.toFixed(1)}/s over ${BASELINE_BANS} bans`);
    console.log(`  agent sink, batched over the socket:                           ${sinkRate.toFixed(0)}/s over ${SINK_BANS} bans`);
    console.log(`  ratio: ${(sinkRate / baselineRate).toFixed(0)}x`);
  } finally {
    await server.stop();
  }
}
