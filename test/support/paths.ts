import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, from the compiled test file's place in dist/test/support. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = {
  agent: join(ROOT, 'dist/agent/main.js'),
  client: join(ROOT, 'dist/cli/main.js'),
  broker: join(ROOT, 'dist/broker/main.js'),
};
