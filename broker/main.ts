#!/usr/bin/env node
import { Command } from 'commander';
import { DEFAULT_CONFIG_FILE, loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { onTermination, reportFatal } from '../src/program.js';
import { startBroker } from './broker.js';

const program = new Command('syncfail2ban-broker')
  .description('Standalone MQTT broker (Aedes) for a syncfail2ban hub; listens on mq_ip:mq_port.')
  .option('-c, --config <file>', 'config file', DEFAULT_CONFIG_FILE)
  .option('--hash-password', 'read a password on stdin and print its hash for the [users] section')
  .parse();

const options = program.opts<{ config: string; hashPassword?: boolean }>();
try {
  if (options.hashPassword) {
    const [{ readPassword }, { hashPassword }] = await Promise.all([import('./read-password.js'), import('./password.js')]);
    const password = await readPassword('Password: ');
    if (password.length < 12) throw new Error('refusing a password shorter than 12 characters');
    process.stdout.write(`${await hashPassword(password)}\n`);
  } else {
    const config = loadConfig(options.config);
    const log = createLogger('syncfail2ban-broker', config.logDebug);
    for (const warning of config.warnings) log.warn(warning);
    const broker = await startBroker({
      host: config.mq.host,
      port: config.mq.port,
      log,
      security: config.broker,
      rateLimit: config.rateLimit,
      ...(config.cluster ? { cluster: config.cluster } : {}),
    });
    onTermination(() => broker.close());
  }
} catch (error) {
  reportFatal('syncfail2ban-broker', error);
}
