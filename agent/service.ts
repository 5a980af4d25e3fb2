import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { onTermination } from '../src/program.js';
import { Agent } from './agent.js';

/** Runs the agent until SIGTERM or SIGINT. */
export async function runService(file: string, dryRun: boolean): Promise<void> {
  const config = loadConfig(file);
  if (dryRun) config.dryRun = true;
  const log = createLogger('syncfail2ban', config.logDebug);
  for (const { name, suggestion } of config.unknownKeys) {
    log.warn({ file, key: name }, `unknown config key ${name} ignored (${suggestion ? `did you mean ${suggestion}?` : 'a typo?'})`);
  }
  for (const warning of config.warnings) log.warn(warning);
  const agent = new Agent(config, log);
  const started = agent.start();
  onTermination(async () => {
    // A stop during start-up waits for it, so that every part started is stopped.
    await started.catch(() => undefined);
    await agent.stop();
  });
  await started;
}
