import { open, rename } from 'node:fs/promises';

/**
 * Replaces the file at `path` by `text` so that a crash leaves either the old or the new
 * content, never a torn mix: a temp file is written and fsynced, then renamed over it. The
 * rename itself is durable (survives a power cut) once the directory is synced (syncDir).
 */
export async function replaceFile(path: string, text: string): Promise<void> {
  const temp = `${path}.tmp`;
  const file = await open(temp, 'w', 0o640);
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temp, path);
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
