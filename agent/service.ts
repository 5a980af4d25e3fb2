import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { dropPacketIdCache } from '../src/mqtt-memory.js';
import { EXIT_FAILURE, onTermination } from '../src/program.js';
import { Agent } from './agent.js';
import { Inbox } from './links/inbox.js';
import { Reloader, warnAbout } from './reload.js';

/** Runs the agent until SIGTERM or SIGINT; SIGHUP re-reads the config (--dry-run stays on). */
export async function runService(file: string, dryRun: boolean): Promise<void> {
  const config = loadConfig(file);
  const log = createLogger('syncfail2ban', config.logDebug);
  dropPacketIdCache();
  warnAbout(config, log);
  // One for every agent a reload builds: the links they hand over keep delivering into it.
  const inbox = new Inbox(log);
  const agents = new Reloader(
    file,
    config,
    (next) => {
      if (dryRun) next.dryRun = true;
      return new Agent(next, log, inbox);
    },
    log,
  );
  const started = agents.start();
  process.on('SIGHUP', () => {
    agents.reload().catch((error: Error) => {
      // Nothing runs on either config: exit non-zero so that systemd restarts the service.
      log.fatal(`${error.message}; exiting`);
      process.exit(EXIT_FAILURE);
    });
  });
  onTermination(() => agents.stop());
  await started;
}
