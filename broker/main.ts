#!/usr/bin/env node
import { parseCommandLine } from '../src/command-line.js';
import { DEFAULT_CONFIG_FILE, loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { dropPacketIdCache } from '../src/mqtt-memory.js';
import { onTermination, reportFatal } from '../src/program.js';
import { startBroker } from './broker.js';

const NAME = 'syncfail2ban-broker';
const { values } = parseCommandLine(
  {
    name: NAME,
    summary: 'Standalone MQTT broker (Aedes) for a syncfail2ban hub; listens on mq_ip:mq_port.',
    usage: ['[-c FILE]', '--hash-password'],
    options: [
      { long: 'config', short: 'c', value: 'file', description: `config file (default: ${DEFAULT_CONFIG_FILE})` },
      { long: 'hash-password', description: 'read a password on stdin and print its hash for the [users] section' },
    ],
    maxPositionals: 0,
    epilogue: 'Exit codes: 0 ok, 1 failure, 2 bad arguments, 78 configuration error (a port in use included).',
  },
  process.argv.slice(2),
);

try {
  if (values['hash-password']) {
    const [{ readPassword }, { hashPassword }] = await Promise.all([import('./read-password.js'), import('./password.js')]);
    const password = await readPassword('Password: ');
    if (password.length < 12) throw new Error('refusing a password shorter than 12 characters');
    process.stdout.write(`${await hashPassword(password)}\n`);
  } else {
    const config = loadConfig((values.config as string | undefined) ?? DEFAULT_CONFIG_FILE);
    const log = createLogger(NAME, config.logDebug);
    for (const warning of config.warnings) log.warn(warning);
    dropPacketIdCache();
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
  reportFatal(NAME, error);
}
