import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { NftablesSink } from '../../../agent/sinks/nftables/nftables-sink.js';
import { waitFor } from '../../support/wait.js';

/** A stand-in for nft that never answers (a hung nft), writing its pid where the test can end it. */
const HANG = "require('fs').appendFileSync(process.env.PIDS, process.pid + '\\n'); setInterval(() => {}, 1000)";

describe('nftables sink: stopping while nft hangs', function () {
  this.timeout(30_000);
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-nft-stop-'));
    process.env.PIDS = join(dir, 'pids');
  });
  afterEach(async () => {
    const pids = await readFile(join(dir, 'pids'), 'utf8').catch(() => '');
    for (const pid of pids.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone already
      }
    }
    delete process.env.PIDS;
    await rm(dir, { recursive: true, force: true });
  });

  it('gives up on a look at the table that does not end, at its deadline, and says what it did not apply', async () => {
    const logged: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => logged.push(line) });
    const sink = new NftablesSink({
      config: { enabled: true, jails: ['sshd'], hooks: ['input'], verdict: 'drop', ports: [], reconcileIntervalS: 3600 },
      nodeId: 'this-host',
      holdings: new Holdings(),
      pick: (backend) => backend,
      log,
      nft: { command: [process.execPath, '-e', HANG, '--'], timeoutMs: 120_000 },
    });
    await sink.start();
    await waitFor(async () => (await readFile(join(dir, 'pids'), 'utf8').catch(() => '')).length > 0, 'the look at the table to run nft');
    sink.submit([{ target: 'syncfail2ban', action: 'ban', address: '203.0.113.7' }]);
    const stopped = sink.stop(500).then(() => 'stopped');
    const late = new Promise((resolve) => setTimeout(() => resolve('still stopping after 10 s'), 10_000));
    expect(await Promise.race([stopped, late])).to.equal('stopped');
    expect(logged.join('')).to.include('stopped before every accepted change was applied');
  });
});
