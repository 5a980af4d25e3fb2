import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';

/**
 * The file operations everything in state_dir goes through. None follows a symbolic link
 * (state_dir is root's; a link planted there must not make the agent read or write another
 * file), every read checks the file's type and size first, every write checks that all of it
 * was written.
 */

const { O_RDONLY, O_WRONLY, O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = constants;

/** A file in state_dir that cannot be used as it is: what is wrong (`message`) and what to do about it. */
export class StateFileError extends Error {
  override readonly name = 'StateFileError';

  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/** A write that stopped part-way: `written` bytes of it are in the file. */
export class ShortWriteError extends Error {
  override readonly name = 'ShortWriteError';

  constructor(
    readonly written: number,
    cause: Error,
  ) {
    super(cause.message, { cause });
  }
}

/**
 * Opens a file of state_dir for reading; null when there is none. Throws a StateFileError
 * when it is a symbolic link, not a regular file, or larger than `maxBytes`.
 */
export function openForReading(path: string, maxBytes: number): { fd: number; size: number } | null {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted there must not hang the start.
    fd = openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw notAFile(path, 'a symbolic link');
    throw error;
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw notAFile(path, stat.isDirectory() ? 'a directory' : 'not a regular file');
    if (stat.size > maxBytes) {
      throw new StateFileError(
        `${path} is ${megabytes(stat.size)}, more than the ${megabytes(maxBytes)} syncfail2ban ever writes there: it was not written by syncfail2ban, or is damaged`,
        `move it out of state_dir (mv ${path} /root/), then start again; what it held is lost (send the current bans again with "syncfail2ban-client -f <jail>" on each host)`,
      );
    }
    return { fd, size: stat.size };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/** Whether a file of state_dir exists (as anything, a symbolic link included). */
export function existsNoFollow(path: string): boolean {
  try {
    closeSync(openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK));
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

function notAFile(path: string, what: string): StateFileError {
  return new StateFileError(
    `${path} is ${what}, where syncfail2ban keeps a file of its own: it was not made by syncfail2ban`,
    `remove it (rm -r ${path}; look first at what made it), then start again`,
  );
}

const READ_CHUNK_BYTES = 1 << 20;

/**
 * Calls `onLine` with each line of an open file (without its "\n"), reading a chunk at a time
 * so that memory stays at a line, not the file. A line longer than `maxLineBytes` is passed
 * cut to that length (no record is that long, so its decoder refuses it), the rest of it
 * skipped without being kept. A last line without "\n" (torn by a crash) is passed too;
 * `endsWithNewline` tells. Closes the file.
 */
export function readLines(fd: number, onLine: (line: string) => void, maxLineBytes: number): { bytes: number; endsWithNewline: boolean } {
  const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  // The start of a line begun in an earlier chunk (copied: the chunk is reused), at most maxLineBytes.
  let head: Buffer[] = [];
  let kept = 0;
  let bytes = 0;
  let endsWithNewline = true;
  const keep = (part: Buffer) => {
    const take = Math.min(part.length, maxLineBytes - kept);
    if (take > 0) head.push(Buffer.from(part.subarray(0, take)));
    kept += Math.max(take, 0);
  };
  try {
    for (let read = readSync(fd, chunk, 0, chunk.length, null); read > 0; read = readSync(fd, chunk, 0, chunk.length, null)) {
      bytes += read;
      const data = chunk.subarray(0, read);
      let start = 0;
      for (let end = data.indexOf(NEWLINE, start); end !== -1; end = data.indexOf(NEWLINE, start)) {
        const line = data.subarray(start, Math.min(end, start + maxLineBytes));
        if (head.length === 0) {
          onLine(line.toString('utf8'));
        } else {
          keep(line);
          onLine(Buffer.concat(head).toString('utf8'));
          head = [];
          kept = 0;
        }
        start = end + 1;
      }
      if (start < read) keep(data.subarray(start));
      endsWithNewline = start === read;
    }
  } finally {
    closeSync(fd);
  }
  if (!endsWithNewline) onLine(Buffer.concat(head).toString('utf8'));
  return { bytes, endsWithNewline };
}

export const NEWLINE = 0x0a;

/** Opens a file of state_dir for appending, creating it (mode 0640); never through a symbolic link. */
export function openForAppend(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0o640);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') throw notAFile(path, 'a symbolic link');
    throw error;
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw notAFile(path, 'not a regular file');
  }
  return fd;
}

/**
 * Writes all of `buffer` at the file's position (its end, for a file opened to append), with
 * as many write(2) calls as it takes. Throws a ShortWriteError saying how much was written
 * when the rest cannot be (ENOSPC, EIO, EDQUOT...).
 */
export function writeAll(fd: number, buffer: Buffer): void {
  let written = 0;
  while (written < buffer.length) {
    let count: number;
    try {
      count = writeSync(fd, buffer, written, buffer.length - written);
    } catch (error) {
      throw new ShortWriteError(written, error as Error);
    }
    if (count <= 0) throw new ShortWriteError(written, Object.assign(new Error('write(2) wrote nothing'), { code: 'EIO' }));
    written += count;
  }
}

/**
 * Replaces the file at `path` by `text` so that a crash leaves either the old or the new
 * content, never a torn mix: a temp file (`<path>.tmp`) is written and fsynced, then renamed
 * over it, and the directory synced. A failure removes the temp file (on a full disk it would
 * hold the space that is missing) and throws.
 */
export async function replaceFile(path: string, text: string, dir: string): Promise<void> {
  const temp = `${path}.tmp`;
  try {
    const file = await open(temp, 'wx', 0o640).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
      // Left by a crash (or planted: a link is removed, never followed).
      await rm(temp, { force: true });
      return open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o640);
    });
    try {
      // FileHandle.writeFile writes until all of it is written, and throws otherwise.
      await file.writeFile(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
  await syncDir(dir);
}

/** Makes the creations, renames and removals of entries in `dir` durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function megabytes(bytes: number): string {
  return `${Math.round(bytes / 2 ** 20)} MiB`;
}
