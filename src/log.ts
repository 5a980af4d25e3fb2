import { pino } from 'pino';

export type Logger = pino.Logger;

/** JSON lines on stdout (journald keeps them as they are); `debug` follows log_debug. */
export function createLogger(name: string, debug = false): Logger {
  return pino({
    name,
    level: process.env.SYNCFAIL2BAN_LOG_LEVEL ?? (debug ? 'debug' : 'info'),
    base: { pid: process.pid },
    redact: { paths: ['password', 'secret', 'key', '*.password', '*.secret', '*.key'], censor: '[redacted]' },
  });
}
