#!/usr/bin/env node
import { Command } from 'commander';
import { DEFAULT_CONFIG_FILE, loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { onTermination, reportFatal } from '../src/program.js';
import { Agent } from './agent.js';

const program = new Command('syncfail2ban')
  .description('Keeps fail2ban bans in sync across servers over MQTT (the agent service).')
  .option('-c, --config <file>', 'config file', DEFAULT_CONFIG_FILE)
  .option('--check', 'check the config and the fail2ban jails, print each problem with its fix, then exit (0: all good, 1: problems)')
  .option('--dry-run', 'run everything, but only log what would be applied to fail2ban and OPNsense (as dry_run = true)')
  .parse();

const { config: file, check, dryRun } = program.opts<{ config: string; check?: boolean; dryRun?: boolean }>();
if (check) {
  try {
    const { runDoctor } = await import('./doctor.js');
    process.exit(await runDoctor(file));
  } catch (error) {
    reportFatal('syncfail2ban --check', error);
  }
}
try {
  const config = loadConfig(file);
  if (dryRun) config.dryRun = true;
  const log = createLogger('syncfail2ban', config.logDebug);
  for (const key of config.unknownKeys) log.warn({ file, key }, `unknown config key ${key} ignored (a typo?)`);
  for (const warning of config.warnings) log.warn(warning);
  const agent = new Agent(config, log);
  const started = agent.start();
  onTermination(async () => {
    // A stop during start-up waits for it, so that every part started is stopped.
    await started.catch(() => undefined);
    await agent.stop();
  });
  await started;
} catch (error) {
  reportFatal('syncfail2ban', error);
}
