import { closeSync, constants, fstatSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../src/config-reader.js';
import type { Logger } from '../../src/log.js';
import type { PartStatus } from '../../src/status.js';
import { reloadKey, type Part } from '../../src/part.js';
import { openForReading, readLines, writeAll } from './durable-file.js';

export const LOCK_FILE = 'syncfail2ban.lock';

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;

/** Who holds a lock: the process and when it started (a pid alone may have been reused since). */
interface Holder {
  pid: number;
  /** Start time of the process in clock ticks since boot (/proc/<pid>/stat), when known. */
  started: string | undefined;
}

/**
 * One agent per state_dir: two would append to one holdings journal and each compact it
 * under the other. The lock is a file in state_dir naming the holder's pid (and its start
 * time, so that a pid reused by another program does not keep the lock): created with
 * O_EXCL, removed at stop, and taken over when its holder is gone (a kill -9, a power cut).
 *
 * A part, first of the agent's: a reload on the same state_dir takes it over (reloadKey)
 * and never lets go of it; one onto another state_dir takes that one and lets the old go.
 */
export class StateDirLock implements Part {
  readonly reloadKey: string;
  private readonly path: string;
  private held = false;

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
  ) {
    this.path = join(dir, LOCK_FILE);
    this.reloadKey = reloadKey('state-dir-lock', dir);
  }

  /** Takes the lock; throws a ConfigError (exit 78) naming the running agent when another holds it. */
  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    const me: Holder = { pid: process.pid, started: startTime(process.pid) };
    for (let attempt = 0; attempt < 5; attempt++) {
      if (this.create(me)) {
        this.held = true;
        return;
      }
      const { holder, inode } = this.readHolder();
      if (holder && holder.pid !== process.pid && alive(holder)) {
        throw new ConfigError(
          `state_dir: ${this.dir} is in use by another syncfail2ban agent (pid ${holder.pid}, see ${this.path}); two agents on one state_dir would both write its holdings journal; fix: stop that agent first (systemctl stop syncfail2ban, or kill ${holder.pid}), or give this one another state_dir`,
        );
      }
      if (inode !== undefined) this.takeOver(inode, holder);
    }
    throw new ConfigError(`state_dir: cannot take the lock ${this.path}: other agents keep starting on ${this.dir}; fix: run one agent per state_dir`);
  }

  async stop(): Promise<void> {
    if (!this.held) return;
    this.held = false;
    try {
      if (this.readHolder().holder?.pid === process.pid) unlinkSync(this.path);
    } catch (error) {
      this.log.warn({ lock: this.path }, `cannot remove the lock ${this.path} (${(error as Error).message}); the next start takes it over`);
    }
  }

  status(): PartStatus {
    return { kind: 'state_dir', problems: [], measures: {}, details: { path: this.dir, lock: this.held ? this.path : null } };
  }

  /** Creates the lock file naming `me`; false when one is there. */
  private create(me: Holder): boolean {
    let fd: number;
    try {
      fd = openSync(this.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw new ConfigError(`state_dir: cannot create the lock ${this.path} (${(error as Error).message}); fix: set state_dir to a directory root may create and write (default /var/lib/syncfail2ban)`);
    }
    try {
      // Checked, not synced: a lock only means something while its holder runs, and a power cut ends that.
      writeAll(fd, Buffer.from(`${me.pid} ${me.started ?? '-'}\n`));
    } catch (error) {
      closeSync(fd);
      unlinkSync(this.path);
      throw new ConfigError(`state_dir: cannot write the lock ${this.path} (${(error as Error).message}); fix: free space on its filesystem (df -h ${this.dir})`);
    }
    closeSync(fd);
    return true;
  }

  /** The lock's holder (undefined when its content is not one: a crash while it was written) and its inode. */
  private readHolder(): { holder: Holder | undefined; inode: number | undefined } {
    let opened;
    try {
      opened = openForReading(this.path, 4096);
    } catch {
      // A link, a directory, too big: not a lock this program wrote; taken over (renamed aside, never followed).
      return { holder: undefined, inode: inodeOf(this.path) };
    }
    if (!opened) return { holder: undefined, inode: undefined };
    const inode = fstatSync(opened.fd).ino;
    let first = '';
    readLines(opened.fd, (line) => (first ||= line), 100);
    const [pid, started] = first.split(' ');
    const holder = /^[1-9]\d{0,9}$/.test(pid ?? '') ? { pid: Number(pid), started: started === '-' ? undefined : started } : undefined;
    return { holder, inode };
  }

  /**
   * Removes the lock of a holder that is gone: renamed aside first, then checked to be the
   * very file judged stale (another agent starting at the same moment may have replaced it:
   * then it is put back).
   */
  private takeOver(inode: number, holder: Holder | undefined): void {
    const aside = `${this.path}.stale-${process.pid}`;
    try {
      renameSync(this.path, aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    if (inodeOf(aside) !== inode) {
      try {
        linkSync(aside, this.path);
      } catch {
        // Someone else's lock is in place by now: theirs stands.
      }
      unlinkSync(aside);
      return;
    }
    unlinkSync(aside);
    this.log.info({ lock: this.path, previous: holder?.pid }, `took over the lock ${this.path}${holder ? ` of pid ${holder.pid}, which is gone` : ', which named no running agent'}`);
  }
}

function inodeOf(path: string): number | undefined {
  try {
    return lstatSync(path).ino;
  } catch {
    return undefined;
  }
}

/** Whether the holder still runs: its pid exists and, where /proc says, started when the lock says. */
function alive(holder: Holder): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const now = startTime(holder.pid);
  return holder.started === undefined || now === undefined || now === holder.started;
}

/** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ")".
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
