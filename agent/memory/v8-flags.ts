import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Sets, in this process, what the agent's memory figures depend on, so that they hold however
 * it is started: the installed wrapper and `npm start` pass package.json's
 * `config.agentNodeFlags`, npm's bin link and `node dist/agent/main.js` pass nothing. Call it
 * first, before the heap grows. Measured with 100,000 holdings: 146 MB of RSS without, near the
 * wrapper's 70 MB with it (the commit that added this file gives the figures).
 *
 * - A young generation that keeps its first size (1 MB a semi-space) instead of growing to
 *   32 MB. V8 reads --max-semi-space-size only when it sets up the heap, but the growth factor
 *   each time the young generation would grow; left as the admin set it when they passed
 *   --max-semi-space-size themselves.
 * - `gc`, for the heap trim (heap-trim.ts): --expose-gc set now gives it to contexts made from
 *   now on, so one is made to take it from.
 */
export function applyMemoryFlags(): void {
  if (!nodeOptionGiven('--max-semi-space-size')) setFlagsFromString('--semi-space-growth-factor=1');
  if (globalThis.gc) return;
  setFlagsFromString('--expose-gc');
  globalThis.gc = runInNewContext('gc') as typeof globalThis.gc;
  setFlagsFromString('--no-expose-gc');
}

/** Whether node was started with this option, on its command line or in NODE_OPTIONS. */
function nodeOptionGiven(name: string): boolean {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return given.some((option) => option.split('=')[0]!.replaceAll('_', '-') === name);
}
