/**
 * The files of state_dir as an attacker or an accident leaves them (issue 25 finding 7):
 * links are never followed, sizes are checked before reading, and what is wrong stops the
 * start with the file and a fix that fits. And the state_dir lock (issue 22 item 8).
 */
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetState } from '../../../agent/fleet/fleet-state.js';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { LOCK_FILE, StateDirLock } from '../../../agent/state-dir/lock.js';
import { captureLog } from '../../support/capture-log.js';

describe('state_dir files: links, sizes, the lock', () => {
  let dir: string;
  let outside: string;
  let open: Array<{ close(): Promise<void> } | { stop(deadline: number): Promise<void> }>;

  function fleet(stateDir = dir) {
    const holdings = new Holdings();
    const state = new FleetState(holdings, stateDir, [], captureLog().log);
    open.push(state);
    return { state, holdings };
  }

  /** load()'s ConfigError message (exit 78 at start), or undefined when it loaded. */
  function loadError(state: FleetState): string | undefined {
    try {
      state.load();
      return undefined;
    } catch (error) {
      expect((error as Error).name).to.equal('ConfigError');
      return (error as Error).message;
    }
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-files-'));
    outside = await mkdtemp(join(tmpdir(), 'sf2b-outside-'));
    open = [];
  });
  afterEach(async () => {
    for (const item of open) await ('close' in item ? item.close() : item.stop(0));
    await rm(dir, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  it('a holdings.journal that is a link stops the start naming it, and nothing is appended to its target', async () => {
    const target = join(outside, 'shadow');
    await writeFile(target, 'root:x:0:0\n');
    await symlink(target, join(dir, 'holdings.journal'));
    const message = loadError(fleet().state);
    expect(message).to.equal(
      `state_dir: ${join(dir, 'holdings.journal')} is a symbolic link, where syncfail2ban keeps a file of its own: it was not made by syncfail2ban; fix: remove it (rm -r ${join(dir, 'holdings.journal')}; look first at what made it), then start again`,
    );
    expect(await readFile(target, 'utf8')).to.equal('root:x:0:0\n');
  });

  it('a holdings.snapshot.tmp that is a link is replaced, never followed: its target is not truncated', async () => {
    const target = join(outside, 'precious');
    await writeFile(target, 'keep me\n');
    await symlink(target, join(dir, 'holdings.snapshot.tmp'));
    const { state } = fleet();
    expect(loadError(state)).to.equal(undefined);
    state.addAll('host-a', 'sshd', ['203.0.113.1', '203.0.113.2']);
    await state.close();
    expect(await readFile(target, 'utf8')).to.equal('keep me\n');
    expect(await readFile(join(dir, 'holdings.snapshot'), 'utf8')).to.equal('{"generation":1}\n+ host-a sshd 203.0.113.1\n+ host-a sshd 203.0.113.2\n');
    expect((await readdir(dir)).sort()).to.deep.equal(['holdings.journal', 'holdings.snapshot']);
  });

  it('a snapshot that is a directory stops the start, naming it', async () => {
    await mkdir(join(dir, 'holdings.snapshot'));
    expect(loadError(fleet().state)).to.match(/holdings\.snapshot is a directory, where syncfail2ban keeps a file of its own.*fix: remove it/);
  });

  it('a journal larger than the store ever writes stops the start before it is read, with a fix that fits', async () => {
    await writeFile(join(dir, 'holdings.journal'), '');
    await truncate(join(dir, 'holdings.journal'), 4_096 * 2 ** 20); // sparse: nothing is written
    const message = loadError(fleet().state);
    expect(message).to.match(
      new RegExp(
        `^state_dir: ${join(dir, 'holdings.journal')} is 4096 MiB, more than the \\d+ MiB syncfail2ban ever writes there: it was not written by syncfail2ban, or is damaged; fix: move it out of state_dir \\(mv ${join(dir, 'holdings.journal')} /root/\\), then start again`,
      ),
    );
  });

  it('a journal of one huge line (no newline in 64 MB) is read with memory of a line, not of the file', async function () {
    await writeFile(join(dir, 'holdings.snapshot'), '+ host-a sshd 203.0.113.9\n');
    await writeFile(join(dir, 'holdings.journal'), '');
    await truncate(join(dir, 'holdings.journal'), 64 * 2 ** 20);
    const before = process.memoryUsage().rss;
    const { state, holdings } = fleet();
    const loaded = state.load();
    expect(process.memoryUsage().rss - before, 'far less than the file').to.be.below(32 * 2 ** 20);
    expect(loaded.skipped, 'the line is not a record').to.equal(1);
    expect(holdings.isHeld('sshd', '203.0.113.9')).to.equal(true);
    // The next record starts a line of its own.
    state.addAll('host-a', 'sshd', ['203.0.113.10']);
    open.pop();
    const again = fleet();
    expect(again.state.load().skipped).to.equal(1);
    expect(again.holdings.isHeld('sshd', '203.0.113.10')).to.equal(true);
  });

  describe('the state_dir lock', () => {
    function lock(stateDir = dir) {
      const captured = captureLog();
      const part = new StateDirLock(stateDir, captured.log);
      open.push(part);
      return { part, ...captured };
    }

    async function startError(part: StateDirLock): Promise<Error | undefined> {
      return part.start().then(
        () => undefined,
        (error: Error) => error,
      );
    }

    it('refuses a second agent while the first runs, naming its pid; lets go at stop', async () => {
      const first = lock();
      await first.part.start();
      expect(await readFile(join(dir, LOCK_FILE), 'utf8')).to.match(new RegExp(`^${process.pid} \\d+\\n$`));
      // Another running process holds it: this test's parent stands for the first agent.
      await writeFile(join(dir, LOCK_FILE), `${process.ppid} -\n`);
      const error = await startError(lock().part);
      expect(error?.name).to.equal('ConfigError');
      expect(error?.message).to.equal(
        `state_dir: ${dir} is in use by another syncfail2ban agent (pid ${process.ppid}, see ${join(dir, LOCK_FILE)}); two agents on one state_dir would both write its holdings journal; fix: stop that agent first (systemctl stop syncfail2ban, or kill ${process.ppid}), or give this one another state_dir`,
      );
      await writeFile(join(dir, LOCK_FILE), `${process.pid} -\n`);
      await first.part.stop();
      expect(existsSync(join(dir, LOCK_FILE))).to.equal(false);
    });

    it('takes over the lock of a process that is gone, of a pid reused by another program, or a lock that names nobody', async () => {
      const dead = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8')) + 1; // no process has it
      for (const content of [`${dead} 12345\n`, `${process.ppid} 1\n`, '', 'garbage\n']) {
        await writeFile(join(dir, LOCK_FILE), content);
        const { part } = lock();
        await part.start();
        expect(await readFile(join(dir, LOCK_FILE), 'utf8'), JSON.stringify(content)).to.match(new RegExp(`^${process.pid} `));
        await part.stop();
      }
      expect(await readdir(dir), 'nothing left aside').to.deep.equal([]);
    });

    it('never writes through a lock that is a link', async () => {
      const target = join(outside, 'target');
      await writeFile(target, 'untouched\n');
      await symlink(target, join(dir, LOCK_FILE));
      const { part } = lock();
      await part.start();
      expect(await readFile(target, 'utf8')).to.equal('untouched\n');
      expect(await readFile(join(dir, LOCK_FILE), 'utf8')).to.match(new RegExp(`^${process.pid} `));
    });

    it('a reload on the same state_dir takes the running lock over (same reloadKey); another state_dir has its own', () => {
      expect(lock().part.reloadKey).to.equal(lock().part.reloadKey);
      expect(lock(join(dir, 'other')).part.reloadKey).to.not.equal(lock().part.reloadKey);
    });
  });
});
