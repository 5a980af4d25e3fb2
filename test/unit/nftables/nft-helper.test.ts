import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { NftHelper } from '../../../agent/sinks/nftables/nft-helper.js';
import { NftablesSink } from '../../../agent/sinks/nftables/nftables-sink.js';
import { Nft, NftError } from '../../../agent/sinks/nftables/nft.js';
import { waitFor } from '../../support/wait.js';

/** A stand-in for nft that notes its parent's pid (and its own) in PIDS, waits until the file GO exists, then prints its parent's pid. */
const PARENT = [
  "const fs = require('fs');",
  "fs.appendFileSync(process.env.PIDS, `${process.ppid} ${process.pid}\\n`);",
  "const wait = () => (fs.existsSync(process.env.GO) ? process.stdout.write(String(process.ppid)) : setTimeout(wait, 10));",
  'wait();',
].join(' ');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('nft helper: the agent starts nft from a helper process, never by forking itself', function () {
  this.timeout(30_000);
  let dir: string;
  let helper: NftHelper;
  const pids = async () => (await readFile(join(dir, 'pids'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map((line) => line.split(' ').map(Number) as [number, number]);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-nft-helper-'));
    process.env.PIDS = join(dir, 'pids');
    process.env.GO = join(dir, 'go');
    helper = new NftHelper();
  });
  afterEach(async () => {
    helper.close();
    for (const [, pid] of await pids()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    delete process.env.PIDS;
    delete process.env.GO;
    await rm(dir, { recursive: true, force: true });
  });

  const nft = (options: { timeoutMs?: number } = {}) => new Nft({ command: [process.execPath, '-e', PARENT, '--'], helper, ...options });

  it('runs nft as a child of the helper, one helper for every run', async () => {
    await writeFile(join(dir, 'go'), '');
    const first = Number(await nft().run(['-f', '-'], 'flush set inet syncfail2ban hosts_v4\n'));
    const second = Number(await nft().run(['-j', 'list', 'tables']));
    expect(first).to.not.equal(process.pid);
    expect(second).to.equal(first);
    expect(await readFile(`/proc/${first}/cmdline`, 'utf8')).to.include('nft-helper-main.js');
  });

  it('takes a helper that dies under a run for gone: the run goes on from the agent, the next starts a new helper', async () => {
    const run = nft().run(['-f', '-'], 'flush set inet syncfail2ban hosts_v4\n');
    const [[helperPid]] = await waitFor(async () => ((await pids()).length > 0 ? await pids() : undefined), 'nft started by the helper');
    process.kill(helperPid, 'SIGKILL');
    await waitFor(async () => (await pids()).some(([parent]) => parent === process.pid), 'the run started again from the agent');
    await writeFile(join(dir, 'go'), '');
    expect(Number(await run)).to.equal(process.pid);
    const next = Number(await nft().run(['-f', '-'], 'flush set inet syncfail2ban hosts_v4\n'));
    expect(next).to.not.be.oneOf([process.pid, helperPid]);
  });

  it('a helper that cannot run (an install without it): each run goes from the agent, and the journal says why', async () => {
    await writeFile(join(dir, 'go'), '');
    const warnings: string[] = [];
    const broken = new NftHelper(pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line).msg) }), join(dir, 'missing-helper.js'));
    try {
      const via = new Nft({ command: [process.execPath, '-e', PARENT, '--'], helper: broken });
      expect(Number(await via.run(['-f', '-'], 'flush set inet syncfail2ban hosts_v4\n'))).to.equal(process.pid);
      expect(Number(await via.run(['-j', 'list', 'tables']))).to.equal(process.pid);
      expect(warnings[0]).to.match(/^the nft helper process exited \(code 1\); its runs go on from the agent/);
    } finally {
      broken.close();
    }
  });

  it('ends with the agent: close() fails what is under way, and the helper and the nft it ran are gone', async () => {
    const run = nft().run(['-f', '-'], 'flush set inet syncfail2ban hosts_v4\n');
    const [[helperPid, nftPid]] = await waitFor(async () => ((await pids()).length > 0 ? await pids() : undefined), 'nft started by the helper');
    helper.close();
    expect(await run.catch((error: Error) => error.message)).to.equal('the agent stopped before nft answered');
    await waitFor(() => !alive(helperPid) && !alive(nftPid), 'the helper and its nft gone');
    expect(await nft().run(['-f', '-'], 'x\n').catch((error: Error) => error.message)).to.include('closed');
  });

  it('says why nft failed as the agent would: missing, or past its timeout', async () => {
    const missing = new Nft({ command: [join(dir, 'no-nft')], helper });
    const error = await missing.run(['-f', '-'], 'x\n').catch((caught: unknown) => caught);
    expect(error).to.be.instanceOf(NftError).and.to.have.property('kind', 'missing');
    const late = await nft({ timeoutMs: 300 }).run(['-f', '-'], 'x\n').catch((caught: unknown) => caught);
    expect(late).to.be.instanceOf(NftError).and.to.have.property('kind', 'timeout');
  });

  it('is what the nftables sink runs nft from, and goes when the sink stops', async () => {
    await writeFile(join(dir, 'go'), '');
    const sink = new NftablesSink({
      config: { enabled: true, jails: ['sshd'], hooks: ['input'], verdict: 'drop', ports: [], reconcileIntervalS: 3600 },
      nodeId: 'this-host',
      holdings: new Holdings(),
      pick: (backend) => backend,
      log: pino({ level: 'silent' }),
      nft: { command: [process.execPath, '-e', PARENT, '--'] },
    });
    await sink.start();
    const [[helperPid]] = await waitFor(async () => ((await pids()).length > 0 ? await pids() : undefined), 'the sink to look at its table');
    expect(helperPid).to.not.equal(process.pid);
    await sink.stop(5_000);
    await waitFor(() => !alive(helperPid), 'the helper gone with the sink');
  });
});
