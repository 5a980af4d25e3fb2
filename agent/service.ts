import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { onTermination } from '../src/program.js';
import { Agent } from './agent.js';
import { startOperatorEndpoints } from './operator-endpoints.js';

/** Runs the agent until SIGTERM or SIGINT. */
export async function runService(file: string): Promise<void> {
  const config = loadConfig(file);
  const log = createLogger('syncfail2ban', config.logDebug);
  for (const { name, suggestion } of config.unknownKeys) {
    log.warn({ file, key: name }, `unknown config key ${name} ignored (${suggestion ? `did you mean ${suggestion}?` : 'a typo?'})`);
  }
  for (const warning of config.warnings) log.warn(warning);
  const agent = new Agent(config, log);
  const endpoints = agent.start().then(() => startOperatorEndpoints(config, () => agent.status(), log));
  onTermination(async () => {
    await agent.stop();
    // A stop during start-up still removes the control socket once it exists.
    await (await endpoints.catch(() => undefined))?.close();
  });
  await endpoints;
}
