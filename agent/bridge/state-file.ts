import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../src/log.js';
import { LogThrottle } from './log-throttle.js';

/** Changes are gathered this long before they are written, so a burst is a few writes, not one per ban. */
export const STATE_WRITE_DELAY_MS = 1_000;

/**
 * One JSON state file, written crash-safely: a temp file is written and fsynced, renamed
 * over the old one, and the directory fsynced, so the file on disk is always either the old
 * or the new state, never a torn mix. Writes are debounced; `flush()` writes at once.
 */
export class StateFile {
  /** Completed writes, for tests and status. */
  writes = 0;
  private dirty = false;
  private disabled = false;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private readonly throttle = new LogThrottle();

  constructor(
    readonly path: string,
    private readonly serialise: () => string,
    private readonly log: Logger,
    private readonly delayMs = STATE_WRITE_DELAY_MS,
  ) {}

  /** False after a problem that makes writing unsafe or impossible (logged when it happened). */
  get persistent(): boolean {
    return !this.disabled;
  }

  /**
   * Reads and decodes the file; null when there is none yet. A file that cannot be read or
   * decoded is moved aside (never overwritten) and null returned, with a loud error.
   */
  async load<T>(decode: (json: unknown) => T): Promise<T | null> {
    const dir = dirname(this.path);
    try {
      await mkdir(dir, { recursive: true, mode: 0o750 });
    } catch (error) {
      this.disabled = true;
      this.log.error(
        { stateFile: this.path },
        `cannot create state_dir ${dir} (${(error as Error).message}); the OPNsense bridge runs without saving its state, so a restart forgets what it added: set state_dir to a directory this user may write (default /var/lib/syncfail2ban)`,
      );
      return null;
    }
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      return this.setAside(`cannot be read (${(error as Error).message})`);
    }
    try {
      return decode(JSON.parse(text) as unknown);
    } catch (error) {
      return this.setAside(`is not a valid state file (${(error as Error).message})`);
    }
  }

  markDirty(): void {
    this.dirty = true;
    this.schedule();
  }

  /** Writes now if anything changed; resolves once it is on disk (a failure is logged, and retried later). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    if (!this.dirty || this.disabled) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.dirty = false;
    this.writing = this.write(this.serialise())
      .catch((error: Error) => {
        this.dirty = true;
        this.schedule();
        if (this.throttle.pass('write') !== null) {
          this.log.error({ stateFile: this.path }, `cannot save the OPNsense bridge state to ${this.path} (${error.message}); will retry: check free space and permissions of ${dirname(this.path)}`);
        }
      })
      .finally(() => (this.writing = undefined));
    await this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer || this.disabled) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.delayMs);
    this.timer.unref();
  }

  private async write(text: string): Promise<void> {
    const temp = `${this.path}.tmp`;
    const file = await open(temp, 'w', 0o640);
    try {
      await file.writeFile(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, this.path);
    // The rename itself is only durable once the directory is synced.
    const dir = await open(dirname(this.path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    this.writes += 1;
  }

  private async setAside(problem: string): Promise<null> {
    const aside = `${this.path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    try {
      await rename(this.path, aside);
    } catch (error) {
      this.disabled = true;
      this.log.error(
        { stateFile: this.path },
        `state file ${this.path} ${problem}, and moving it aside failed (${(error as Error).message}); the OPNsense bridge starts empty and will not overwrite it: fix its permissions or remove it, then restart`,
      );
      return null;
    }
    this.log.error(
      { stateFile: this.path, movedTo: aside },
      `state file ${this.path} ${problem}; moved it to ${aside} and started with an empty state. Addresses the bridge added before are unknown to it now and will never be removed by it: check the aliases on the firewall, and re-send current bans with "syncfail2ban-client -f <jail>" on each host`,
    );
    return null;
  }
}
