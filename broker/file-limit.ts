import { readFileSync } from 'node:fs';

/** The soft limit on open files of this process (LimitNOFILE under systemd), or undefined where /proc does not tell. */
export function openFileLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line ? Number(line[1]) : undefined;
  } catch {
    return undefined;
  }
}
