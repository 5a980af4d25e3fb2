#!/usr/bin/env node
import { Command } from 'commander';
import { DEFAULT_CONFIG_FILE, loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { onTermination, reportFatal } from '../src/program.js';
import { startBroker } from './broker.js';

const program = new Command('syncfail2ban-broker')
  .description('Standalone MQTT broker (Aedes) for a syncfail2ban hub; listens on mq_ip:mq_port.')
  .option('-c, --config <file>', 'config file', DEFAULT_CONFIG_FILE)
  .parse();

const { config: file } = program.opts<{ config: string }>();
try {
  const config = loadConfig(file);
  const log = createLogger('syncfail2ban-broker', config.logDebug);
  const broker = await startBroker({ host: config.mq.host, port: config.mq.port, log });
  onTermination(() => broker.close());
} catch (error) {
  reportFatal('syncfail2ban-broker', error);
}
