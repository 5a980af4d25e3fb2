import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from './run.js';

/**
 * A throwaway copy of this machine: an overlay on its root file system whose changes land in
 * a temp dir, entered with chroot in a mount namespace of its own, and a network namespace of
 * its own (nft in the package's scripts sees its tables only). Real dpkg, apt and systemctl
 * (offline: no systemd runs there) work in it; the machine itself is not touched.
 * Needs root. Each `sh` call mounts it anew, so that changes carry from one call to the next.
 */
export class SystemCopy {
  private constructor(private readonly dir: string) {}

  static async create(): Promise<SystemCopy> {
    const dir = await mkdtemp(join(tmpdir(), 'sf2b-system-'));
    await Promise.all(['upper', 'work', 'root'].map((name) => mkdir(join(dir, name))));
    return new SystemCopy(dir);
  }

  /** Where a file put here appears inside the copy at `path` (an absolute path). */
  hostPath(path: string): string {
    return join(this.dir, 'upper', path);
  }

  /** Runs a shell script inside the copy, as root, with no terminal and stdin at end of file. */
  sh(script: string, timeoutMs = 120_000): Promise<RunResult> {
    const [upper, work, root] = ['upper', 'work', 'root'].map((name) => join(this.dir, name));
    const enter = [
      `mount -t overlay overlay -o lowerdir=/,upperdir=${upper},workdir=${work} ${root}`,
      `mount -t proc proc ${root}/proc`,
      `mount --rbind /dev ${root}/dev`,
      `exec chroot ${root} /bin/sh -c "$0"`,
    ].join(' && ');
    return new Promise((resolve) => {
      const child = execFile(
        'unshare',
        ['--mount', '--net', '--propagation', 'private', 'sh', '-c', enter, script],
        { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' } },
        (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
      );
      child.stdin?.end();
    });
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
