// Copies the production packages of package-lock.json (what "npm ci --omit=dev" would
// install) from an existing node_modules into an install tree. Used by make install with
// MODULES_FROM: fast and offline, and the installed tree holds no development package, so
// a run-time import of one fails in the install test as it would on a server.
//
//   node scripts/copy-production-modules.mjs LOCKFILE FROM_NODE_MODULES TO_NODE_MODULES
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const [lockFile, from, to] = process.argv.slice(2);
if (!lockFile || !from || !to) {
  process.stderr.write('usage: copy-production-modules.mjs LOCKFILE FROM_NODE_MODULES TO_NODE_MODULES\n');
  process.exit(2);
}
const lock = JSON.parse(readFileSync(lockFile, 'utf8'));
if (lock.lockfileVersion < 2 || typeof lock.packages !== 'object') {
  process.stderr.write(`${lockFile}: lockfileVersion ${lock.lockfileVersion} has no "packages"; run npm ci instead of MODULES_FROM\n`);
  process.exit(1);
}
let copied = 0;
for (const [key, entry] of Object.entries(lock.packages)) {
  if (!key.startsWith('node_modules/') || entry.dev || entry.link) continue;
  const source = join(from, key.slice('node_modules/'.length));
  if (!existsSync(source)) {
    if (entry.optional) continue; // another platform's optional package
    process.stderr.write(`${source} is missing: run "npm ci" in the checkout first\n`);
    process.exit(1);
  }
  // Nested node_modules are entries of their own, copied (or left out) on their own.
  cpSync(source, join(to, key.slice('node_modules/'.length)), {
    recursive: true,
    filter: (path) => path === source || basename(path) !== 'node_modules',
  });
  copied += 1;
}
process.stdout.write(`copied ${copied} production packages from ${from}\n`);
