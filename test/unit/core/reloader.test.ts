import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Reloader, type Service } from '../../../agent/reload.js';
import { loadConfig, type Config } from '../../../src/config.js';
import { captureLog } from '../../support/capture-log.js';

/** Stands for an agent built from a config: records its lifecycle; its start fails while its node id is in `broken`. */
class FakeAgent implements Service {
  running = false;

  constructor(
    readonly nodeId: string,
    private readonly broken: Set<string>,
    /** A start takes until this settles. */
    private readonly gate?: Promise<void>,
  ) {}

  async start(): Promise<void> {
    await this.gate;
    if (this.broken.has(this.nodeId)) throw new Error(`${this.nodeId} cannot start`);
    this.running = true;
  }

  async stop(): Promise<void> {
    this.running = false;
  }
}

describe('Reloader: a reload after which nothing runs', () => {
  let dir: string;
  let file: string;
  const broken = new Set<string>();
  const built: FakeAgent[] = [];

  const writeConfig = (nodeId: string) => writeFile(file, `[default]\nnode_id = ${nodeId}\n`);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-reloader-'));
    file = join(dir, 'config.cfg');
    broken.clear();
    built.length = 0;
  });

  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function startReloader(nodeId: string, gate?: Promise<void>) {
    await writeConfig(nodeId);
    const { log, lines } = captureLog();
    const build = (config: Config) => {
      const agent = new FakeAgent(config.nodeId, broken, gate);
      built.push(agent);
      return agent;
    };
    const reloader = new Reloader(file, loadConfig(file), build, log);
    const started = reloader.start();
    if (!gate) await started;
    return { reloader, lines, started };
  }

  it('rejects with both reasons when neither the new nor the previous config starts; later reloads and stop still work', async () => {
    const { reloader, lines } = await startReloader('first');
    await writeConfig('second');
    broken.add('second');
    broken.add('first');
    let failure: Error | undefined;
    await reloader.reload().catch((error: Error) => (failure = error));
    expect(failure?.message).to.equal('reload failed (second cannot start), and the previous config did not start again either (first cannot start): no agent runs');
    expect(built.some((agent) => agent.running)).to.equal(false);

    // The queue is not stuck on the failure: the next reload is applied.
    broken.clear();
    await writeConfig('third');
    await reloader.reload();
    expect(lines.some((line) => line.msg === 'config reloaded')).to.equal(true);
    const third = built.find((agent) => agent.nodeId === 'third')!;
    expect(third.running).to.equal(true);

    await reloader.stop();
    expect(third.running).to.equal(false);
  });

  it('stop() settles right after a reload that left nothing running', async () => {
    const { reloader } = await startReloader('first');
    await writeConfig('second');
    broken.add('second');
    broken.add('first');
    await reloader.reload().catch(() => undefined);
    await reloader.stop();
    expect(built.map((agent) => [agent.nodeId, agent.running])).to.deep.equal([['first', false], ['second', false], ['first', false]]);
  });

  it('a reload asked for during start-up waits for the start, then replaces what started', async () => {
    let open!: () => void;
    const { reloader, started } = await startReloader('first', new Promise<void>((resolve) => (open = resolve)));
    await writeConfig('second');
    const reloaded = reloader.reload();
    open();
    await started;
    await reloaded;
    expect(built.map((agent) => [agent.nodeId, agent.running])).to.deep.equal([['first', false], ['second', true]]);
    await reloader.stop();
  });
});
