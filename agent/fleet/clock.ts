import { ConfigError } from '../../src/config-reader.js';

/** Milliseconds since the epoch by this host's clock, as Date.now(): what ban ends are set and kept in. */
export type Clock = () => number;

/**
 * FOR TESTS ONLY: shifts the agent's clock by this many seconds (may be negative), so that a
 * test can play a host whose clock is off from the others'. Read once at start; the agent
 * says in its log when it is set. Never set it on a real host.
 */
export const TEST_CLOCK_OFFSET_VARIABLE = 'SYNCFAIL2BAN_TEST_CLOCK_OFFSET_S';
/** A day: more than any clock a test needs to play. */
const MAX_OFFSET_S = 86_400;

/** The agent's clock: Date.now(), shifted only when a test sets TEST_CLOCK_OFFSET_VARIABLE. Throws a ConfigError for a value that is not whole seconds within a day. */
export function agentClock(env: NodeJS.ProcessEnv = process.env): { clock: Clock; offsetS: number } {
  const text = env[TEST_CLOCK_OFFSET_VARIABLE];
  if (text === undefined || text === '') return { clock: Date.now, offsetS: 0 };
  const offsetS = Number(text);
  if (!/^-?\d+$/.test(text) || Math.abs(offsetS) > MAX_OFFSET_S) {
    throw new ConfigError(`${TEST_CLOCK_OFFSET_VARIABLE}=${JSON.stringify(text)}: not whole seconds within a day; it is for tests only: unset it`);
  }
  return { clock: () => Date.now() + offsetS * 1000, offsetS };
}
