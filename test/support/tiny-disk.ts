import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RunningProcess } from './process.js';
import { run } from './run.js';

/**
 * A small tmpfs, to fill up: mounted in a mount namespace of its own (unshare -m, as root),
 * so that nothing outside sees it and it goes away with its holder process. This process
 * (and the agents it starts) reach it at `path`, through /proc/<holder>/root.
 */
export class TinyDisk {
  private constructor(
    private readonly holder: RunningProcess,
    private readonly mountPoint: string,
  ) {}

  static async mount(sizeKib: number): Promise<TinyDisk> {
    const mountPoint = await mkdtemp(join(tmpdir(), 'sf2b-tiny-disk-'));
    const holder = new RunningProcess('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=${sizeKib}k,mode=0755 tmpfs "$0" && echo mounted && exec sleep 3600`, mountPoint]);
    await holder.waitForOutput(/^mounted$/m, `a ${sizeKib} KiB tmpfs`);
    return new TinyDisk(holder, mountPoint);
  }

  /** Where the tmpfs is, as any process of the host's mount namespace reaches it. */
  get path(): string {
    return `/proc/${this.holder.child.pid}/root${this.mountPoint}`;
  }

  /** Makes it bigger (an admin freeing space) or smaller. */
  async resize(sizeKib: number): Promise<void> {
    const result = await run('nsenter', ['-t', String(this.holder.child.pid), '-m', '--', 'mount', '-o', `remount,size=${sizeKib}k`, this.mountPoint]);
    if (result.code !== 0) throw new Error(`cannot resize the tmpfs: ${result.stderr}`);
  }

  async unmount(): Promise<void> {
    await this.holder.stop('SIGKILL');
    await rm(this.mountPoint, { recursive: true, force: true });
  }
}
