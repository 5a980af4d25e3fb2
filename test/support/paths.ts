import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, from the compiled test file's place in dist/test/support. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = {
  agent: join(ROOT, 'dist/agent/main.js'),
  /** The client as installed: one bundled file (see scripts/bundle-client.mjs). */
  client: join(ROOT, 'dist/cli/client.bundle.cjs'),
  broker: join(ROOT, 'dist/broker/main.js'),
};

/** node's arguments for the agent service as its launchers give them: package.json's config.agentNodeFlags, then the script. */
export const AGENT_SERVICE = [
  ...(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { config: { agentNodeFlags: string } }).config.agentNodeFlags.split(' '),
  BIN.agent,
];
