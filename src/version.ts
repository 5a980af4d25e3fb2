import { readFileSync } from 'node:fs';

/** The version in package.json (two levels above dist/src/, in the repo and in an install), or "unknown". */
export function programVersion(): string {
  try {
    const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
    const version = (JSON.parse(text) as { version?: unknown }).version;
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}
