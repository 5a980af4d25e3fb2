import { ConfigError } from './config-reader.js';

/** Exit codes, the same for every program (docs/operations.md, "Exit codes"): 0 is success. */
export const EXIT_FAILURE = 1;
/** Bad arguments, unknown options included. */
export const EXIT_USAGE = 2;
/** sysexits' EX_CONFIG, a port in use included: systemd units refuse to restart-loop on it. */
export const EXIT_CONFIG = 78;

/** Prints a start-up failure as one line (no stack trace for expected errors) and sets the exit code. */
export function reportFatal(program: string, error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`${program}: ${message}\n`);
  if (!(error instanceof ConfigError) && process.env.SYNCFAIL2BAN_DEBUG && error instanceof Error) {
    process.stderr.write(`${error.stack}\n`);
  }
  process.exit(error instanceof ConfigError ? EXIT_CONFIG : EXIT_FAILURE);
}

/** Runs `stop` once on SIGTERM or SIGINT, then exits 0 (1 if stopping failed). */
export function onTermination(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      (error) => {
        process.stderr.write(`error while stopping on ${signal}: ${(error as Error).message}\n`);
        process.exit(EXIT_FAILURE);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
