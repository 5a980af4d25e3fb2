// Deletes what tsc left in dist/ from sources that no longer exist (a moved or deleted file), so
// that the test globs never run a stale test: tsc builds incrementally and never deletes. Bundles
// (*.bundle.*) have no source of their own and are kept.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';

const dist = 'dist';

function prune(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) prune(path);
    else if (/\.js(\.map)?$/.test(entry.name) && !entry.name.includes('.bundle.') && !existsSync(relative(dist, path).replace(/\.js(\.map)?$/, '.ts'))) rmSync(path);
  }
}

if (existsSync(dist)) prune(dist);
