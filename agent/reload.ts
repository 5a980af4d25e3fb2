import { loadConfig, type Config } from '../src/config.js';
import type { Logger } from '../src/log.js';

/** What a reload swaps: the agent, built from a config, with its parts' lifecycle. */
export interface Service {
  start(): Promise<void>;
  stop(deadlineMs?: number): Promise<void>;
  /** Takes over the parts of the running service that the new config leaves as they are. */
  takeOver?(previous: this): void;
}

/**
 * Runs the agent and, on SIGHUP (`systemctl reload syncfail2ban`), moves it onto the config
 * file as it is now, through the parts' lifecycle. The new agent is built first: a config that
 * does not validate (or names files that cannot be read) is refused with the reason, and the
 * running agent goes on untouched. Otherwise the new agent takes over the running parts that
 * the new config leaves as they are (the embedded broker, the links: they go on receiving),
 * the rest of the running agent stops as at SIGTERM (intake first, then what it accepted is
 * flushed; the holdings store keeps every ban for the new agent's sinks to reconcile) and
 * the new one starts. If the new one cannot start (a port in
 * use), the previous config is started again; if that fails too, no agent runs and reload()
 * rejects (the service exits for systemd to restart it).
 */
export class Reloader<T extends Service> {
  private running: T;
  private queue: Promise<void> = Promise.resolve();
  private stopping = false;

  constructor(
    private readonly file: string,
    private config: Config,
    private readonly build: (config: Config) => T,
    private readonly log: Logger,
  ) {
    this.running = build(config);
  }

  start(): Promise<void> {
    const started = this.running.start();
    // A SIGHUP during start-up is applied once the start has settled, not to half-started parts.
    this.queue = started.catch(() => undefined);
    return started;
  }

  /** One reload at a time, in the order the signals came; none after stop(). A failed one does not hold up the next. */
  reload(): Promise<void> {
    const applied = this.queue.then(() => (this.stopping ? undefined : this.apply()));
    this.queue = applied.catch(() => undefined);
    return applied;
  }

  /** Waits for the start or reload under way, so that every part it started is stopped too. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.queue;
    await this.running.stop();
  }

  private async apply(): Promise<void> {
    const { log } = this;
    let config: Config;
    let next: T;
    try {
      config = loadConfig(this.file);
      next = this.build(config);
    } catch (error) {
      log.error({ file: this.file }, `reload refused: ${(error as Error).message}; the running config is kept`);
      return;
    }
    warnAbout(config, log);
    log.info({ file: this.file }, 'reloading: keeping the broker and links the new config leaves as they are, restarting the other parts on it');
    next.takeOver?.(this.running);
    await this.running.stop();
    try {
      await next.start();
    } catch (error) {
      log.error(`reload failed: ${(error as Error).message}; starting again on the previous config`);
      this.running = this.build(this.config);
      try {
        await this.running.start();
      } catch (again) {
        throw new Error(`reload failed (${(error as Error).message}), and the previous config did not start again either (${(again as Error).message}): no agent runs`);
      }
      return;
    }
    this.running = next;
    this.config = config;
    if (!process.env.SYNCFAIL2BAN_LOG_LEVEL) log.level = config.logDebug ? 'debug' : 'info';
    log.info({ file: this.file, jails: Object.fromEntries(config.jails) }, 'config reloaded');
  }
}

/** What a config says at start and at each reload: unknown keys (with the closest known one), other warnings, notices. */
export function warnAbout(config: Config, log: Logger): void {
  for (const { name, suggestion } of config.unknownKeys) {
    log.warn({ file: config.file, key: name }, `unknown config key ${name} ignored (${suggestion ? `did you mean ${suggestion}?` : 'a typo?'})`);
  }
  for (const warning of config.warnings) log.warn(warning);
  for (const notice of config.notices) log.info(notice);
}
