#!/usr/bin/env node
import { parseCommandLine, usageError } from '../src/command-line.js';
import { DEFAULT_CONFIG_FILE, loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { dropPacketIdCache } from '../src/mqtt-memory.js';
import { onTermination, reportFatal } from '../src/program.js';

const NAME = 'syncfail2ban-broker';
const { values, positionals } = parseCommandLine(
  {
    name: NAME,
    summary: 'Standalone MQTT broker (Aedes) for a syncfail2ban hub; listens on mq_ip:mq_port. "status" asks the running broker for its status over its control socket ([broker] control_socket).',
    usage: ['[-c FILE]', '[-c FILE] status [--json]', '--hash-password'],
    options: [
      { long: 'config', short: 'c', value: 'file', description: `config file (default: ${DEFAULT_CONFIG_FILE})` },
      { long: 'hash-password', description: 'read a password on stdin and print its hash for the [users] section' },
      { long: 'json', description: 'with status: print the status as JSON, for scripts' },
    ],
    maxPositionals: 1,
    epilogue: '"status" exits 1 when the broker is unhealthy or cannot be asked.\nExit codes: 0 ok, 1 failure, 2 bad arguments, 78 configuration error (a port in use included).',
  },
  process.argv.slice(2),
);
const file = (values.config as string | undefined) ?? DEFAULT_CONFIG_FILE;
const [command] = positionals;
if (command !== undefined && command !== 'status') usageError(NAME, `unknown command ${JSON.stringify(command)}`);
if (values.json && command !== 'status') usageError(NAME, '--json goes with status');

try {
  if (values['hash-password']) {
    if (command !== undefined) usageError(NAME, '--hash-password takes no command');
    const [{ readPassword }, { hashPassword }] = await Promise.all([import('./read-password.js'), import('./password.js')]);
    const password = await readPassword('Password: ');
    if (password.length < 12) throw new Error('refusing a password shorter than 12 characters');
    process.stdout.write(`${await hashPassword(password)}\n`);
  } else if (command === 'status') {
    const config = loadConfig(file, 'client');
    const [{ printStatus }, { requestStatus }] = await Promise.all([import('../src/reporting/status-text.js'), import('../src/control-protocol.js')]);
    process.exit(printStatus(await requestStatus(config.brokerReporting.controlSocket, config.connectionTimeoutS * 1000, NAME), values.json === true));
  } else {
    const config = loadConfig(file);
    const log = createLogger(NAME, config.logDebug);
    for (const warning of config.warnings) log.warn(warning);
    dropPacketIdCache();
    const { StandaloneBroker } = await import('./standalone.js');
    const broker = new StandaloneBroker(config, log);
    await broker.start();
    onTermination(() => broker.stop());
  }
} catch (error) {
  reportFatal(NAME, error);
}
