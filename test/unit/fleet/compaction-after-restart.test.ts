import { expect } from 'chai';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HoldingsFile } from '../../../agent/fleet/holdings-file.js';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { captureLog } from '../../support/capture-log.js';
import { waitFor } from '../../support/wait.js';
import { addresses } from './fleet-harness.js';

describe('the holdings store after a restart', function () {
  this.timeout(30_000);
  let dir: string;
  let file: HoldingsFile | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-compaction-'));
  });
  afterEach(async () => {
    await file?.close();
    file = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('counts a journal by the holdings its lines touch, not by its lines: a few snapshot parts over many holdings are compacted at the next change', async () => {
    // Four snapshots re-confirming the same 20,000 holdings, in parts of 4,000 as they arrive:
    // 20 lines that replay 80,000 holdings, more than the store holds and more than the
    // journal's minimum before a compaction (50,000).
    const held = addresses(10, 20_000);
    const ids = ['0000000000000001', '0000000000000002', '0000000000000003', '0000000000000004'];
    const parts = ids.flatMap((id) => [0, 1, 2, 3, 4].map((part) => `P host-a sshd ${id} ${held.slice(part * 4_000, (part + 1) * 4_000).join(' ')}\n`));
    await writeFile(join(dir, 'holdings.journal'), parts.join(''));
    const holdings = new Holdings();
    file = new HoldingsFile(dir, holdings, captureLog().log, () => []);
    file.load();
    expect(holdings.size).to.equal(20_000);
    file.append([['+', 'host-c', 'sshd', '203.0.113.7']]);
    await waitFor(async () => (await readdir(dir)).includes('holdings.snapshot'), 'a compaction after the first change', 10_000);
  });
});
