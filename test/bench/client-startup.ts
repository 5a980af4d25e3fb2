import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startBroker } from '../../broker/broker.js';
import { DEFAULT_BROKER_LIMITS } from '../../src/config-security.js';
import { BIN } from '../support/paths.js';
import { freePort } from '../support/ports.js';
import { run as runProgram } from '../support/run.js';
import { median, timed } from './stats.js';

const RUNS = 15;

/**
 * What one fail2ban action costs: syncfail2ban-client publishing one ban to a live broker,
 * against the floor of starting node at all (spawned the same way).
 */
export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sf2b-bench-'));
  const port = await freePort();
  const log = pino({ level: 'silent' });
  const broker = await startBroker({ host: '127.0.0.1', port, log, security: { users: new Map(), admins: new Set(), limits: DEFAULT_BROKER_LIMITS }, rateLimit: { perSecond: 1_000, burst: 1_000 } });
  const config = join(dir, 'config.cfg');
  await writeFile(config, `mq_ip = 127.0.0.1\nmq_port = ${port}\n`);
  try {
    const measure = async (command: string, args: string[]) => {
      const times: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        times.push(
          await timed(async () => {
            const result = await runProgram(command, args);
            if (result.code !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr}`);
          }),
        );
      }
      return median(times);
    };
    const nodeMs = await measure(process.execPath, ['-e', '']);
    const clientMs = await measure(process.execPath, [BIN.client, '--config', config, '-a', 'sshd', 'banip', '203.0.113.7']);
    console.log(`measured: median wall time of ${RUNS} runs of one process each`);
    console.log(`  node -e '' (floor):                       ${nodeMs.toFixed(0)} ms`);
    console.log(`  syncfail2ban-client -a sshd banip (publish): ${clientMs.toFixed(0)} ms  = ${(clientMs / nodeMs).toFixed(2)}x the floor`);
  } finally {
    await broker.close();
    await rm(dir, { recursive: true, force: true });
  }
}
