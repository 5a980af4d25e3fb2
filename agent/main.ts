#!/usr/bin/env node
import { Command } from 'commander';
import { DEFAULT_CONFIG_FILE, loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { onTermination, reportFatal } from '../src/program.js';
import { Agent } from './agent.js';

const program = new Command('syncfail2ban')
  .description('Keeps fail2ban bans in sync across servers over MQTT (the agent service).')
  .option('-c, --config <file>', 'config file', DEFAULT_CONFIG_FILE)
  .parse();

const { config: file } = program.opts<{ config: string }>();
try {
  const config = loadConfig(file);
  const log = createLogger('syncfail2ban', config.logDebug);
  for (const key of config.unknownKeys) log.warn({ file, key }, `unknown config key ${key} ignored (a typo?)`);
  const agent = new Agent(config, log);
  onTermination(() => agent.stop());
  await agent.start();
} catch (error) {
  reportFatal('syncfail2ban', error);
}
