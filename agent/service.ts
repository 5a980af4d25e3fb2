import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { onTermination } from '../src/program.js';
import { Agent } from './agent.js';
import { startOperatorEndpoints } from './operator-endpoints.js';
import { Reloader, warnAbout } from './reload.js';

/** Runs the agent until SIGTERM or SIGINT; SIGHUP re-reads the config. */
export async function runService(file: string): Promise<void> {
  const config = loadConfig(file);
  const log = createLogger('syncfail2ban', config.logDebug);
  warnAbout(config, log);
  const agents = new Reloader(file, config, (next) => new Agent(next, log), log);
  const endpoints = agents.start().then(() => startOperatorEndpoints(config, () => agents.current.status(), log));
  process.on('SIGHUP', () => void agents.reload());
  onTermination(async () => {
    await agents.stop();
    // A stop during start-up still removes the control socket once it exists.
    await (await endpoints.catch(() => undefined))?.close();
  });
  await endpoints;
}
