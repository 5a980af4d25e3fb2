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

const PAIRS = 21;

export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sf2b-bench-'));
  const port = await freePort();
  const log = pino({ level: 'silent' });
  const broker = await startBroker({ host: '127.0.0.1', port, log, security: { users: new Map(), admins: new Set(), limits: DEFAULT_BROKER_LIMITS }, rateLimit: { perSecond: 1_000, burst: 1_000 } });
  const config = join(dir, 'config.cfg');
  await writeFile(config, `mq_ip = 127.0.0.1\nmq_port = ${port}\n`);
  try {
    const once = async (command: string, args: string[]) =>
      timed(async () => {
        const result = await runProgram(command, args);
        if (result.code !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr}`);
      });
    const client = [BIN.client, '--config', config, '-a', 'sshd', 'banip', '203.0.113.7'];
    await once(process.execPath, client); // warm the file cache
    // In turn, pair by pair, so that a machine whose speed drifts weighs on both alike.
    const nodeMs: number[] = [];
    const clientMs: number[] = [];
    for (let i = 0; i < PAIRS; i++) {
      nodeMs.push(await once(process.execPath, ['-e', '']));
      clientMs.push(await once(process.execPath, client));
    }
    const ratios = clientMs.map((ms, i) => ms / nodeMs[i]!);
    console.log(`measured: wall time of one process each, ${PAIRS} pairs run in turn`);
    console.log(`  node -e '' (floor):                          median ${median(nodeMs).toFixed(0)} ms`);
    console.log(`  syncfail2ban-client -a sshd banip (publish): median ${median(clientMs).toFixed(0)} ms`);
    console.log(`  ratio client / floor, median of the pairs:   ${median(ratios).toFixed(2)}x (min ${Math.min(...ratios).toFixed(2)}, max ${Math.max(...ratios).toFixed(2)})`);
  } finally {
    await broker.close();
    await rm(dir, { recursive: true, force: true });
  }
}
