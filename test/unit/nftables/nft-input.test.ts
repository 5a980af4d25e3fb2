import { expect } from 'chai';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NftHelper } from '../../../agent/sinks/nftables/nft-helper.js';
import { Nft } from '../../../agent/sinks/nftables/nft.js';

/** A stand-in for nft that copies its stdin to OUT and says where it read it from. */
const COPY_STDIN = "const fs = require('fs'); fs.writeFileSync(process.env.OUT, fs.readFileSync(0)); process.stdout.write(fs.fstatSync(0).isFile() ? 'file' : 'pipe')";

for (const via of ['this process', 'the helper'] as const) describe(`nft, run from ${via}: a script reaches it whole`, () => {
  let dir: string;
  const savedTmpdir = process.env.TMPDIR;
  const helper = via === 'the helper' ? new NftHelper() : undefined;
  after(() => helper?.close());

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-nft-input-'));
    process.env.OUT = join(dir, 'out');
  });
  afterEach(async () => {
    if (savedTmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmpdir;
    delete process.env.OUT;
    await rm(dir, { recursive: true, force: true });
  });

  /** A script of 100,000 elements (2.6 MB, far beyond a pipe's buffer), as the sink writes them. */
  const script = `add element inet syncfail2ban hosts_v4 {\n${Array.from({ length: 100_000 }, (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255} timeout 600s,`).join('\n')}\n}\n`;
  const nft = () => new Nft({ command: [process.execPath, '-e', COPY_STDIN, '--'], helper });

  it('from a file it reads at its own pace, which leaves nothing behind', async () => {
    const scratch = join(dir, 'tmp');
    await mkdir(scratch);
    process.env.TMPDIR = scratch;
    expect(await nft().run(['-f', '-'], script)).to.equal('file');
    expect(await readFile(join(dir, 'out'), 'utf8')).to.equal(script);
    expect(await readdir(scratch)).to.deep.equal([]);
  });

  it('through a pipe when no file can be written there', async () => {
    process.env.TMPDIR = join(dir, 'missing');
    expect(await nft().run(['-f', '-'], script)).to.equal('pipe');
    expect(await readFile(join(dir, 'out'), 'utf8')).to.equal(script);
  });

  it('runs nft with English messages and glibc asked for huge pages, keeping the tunables the agent was given', async () => {
    const saved = process.env.GLIBC_TUNABLES;
    process.env.GLIBC_TUNABLES = 'glibc.malloc.arena_max=2';
    try {
      const environment = new Nft({ command: [process.execPath, '-e', 'process.stdout.write(`${process.env.LC_ALL} ${process.env.GLIBC_TUNABLES}`)', '--'], helper });
      expect(await environment.run(['-f', '-'], 'flush set inet syncfail2ban hosts_v4\n')).to.equal('C glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1');
    } finally {
      if (saved === undefined) delete process.env.GLIBC_TUNABLES;
      else process.env.GLIBC_TUNABLES = saved;
    }
  });
});
