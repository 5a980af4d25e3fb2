import { ConfigError } from './config-reader.js';

/** sysexits' EX_CONFIG: systemd units can refuse to restart-loop on it. */
export const EXIT_CONFIG = 78;

/** Prints a start-up failure as one line (no stack trace for expected errors) and sets the exit code. */
export function reportFatal(program: string, error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`${program}: ${message}\n`);
  if (!(error instanceof ConfigError) && process.env.SYNCFAIL2BAN_DEBUG && error instanceof Error) {
    process.stderr.write(`${error.stack}\n`);
  }
  process.exit(error instanceof ConfigError ? EXIT_CONFIG : 1);
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
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
