import { createRequire } from 'node:module';
import { pino } from 'pino';
import type PinoPretty from 'pino-pretty';

export type Logger = pino.Logger;

/**
 * JSON lines on stdout (journald keeps them as they are), or readable lines when stdout is a
 * terminal; SYNCFAIL2BAN_LOG_FORMAT=json or =pretty forces one. `debug` follows log_debug.
 */
export function createLogger(name: string, debug = false): Logger {
  const options: pino.LoggerOptions = {
    name,
    level: process.env.SYNCFAIL2BAN_LOG_LEVEL ?? (debug ? 'debug' : 'info'),
    base: { pid: process.pid },
    // Defence in depth: nothing logs credentials on purpose ('key' is not here: it names config keys).
    redact: { paths: ['password', 'secret', '*.password', '*.secret'], censor: '[redacted]' },
  };
  return wantsPretty() ? pino(options, prettyStream()) : pino(options);
}

function wantsPretty(): boolean {
  const format = process.env.SYNCFAIL2BAN_LOG_FORMAT;
  return format === 'pretty' || (format !== 'json' && process.stdout.isTTY === true);
}

/** Loaded only for a terminal: a service under systemd never pays for it. Synchronous, so nothing is lost on exit. */
function prettyStream(): PinoPretty.PrettyStream {
  const build = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  return build({ sync: true, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'pid,hostname' });
}
