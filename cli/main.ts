#!/usr/bin/env node
// Runs once per ban as a fail2ban action: imports only what publishing needs.
import { Command } from 'commander';
import { DEFAULT_CONFIG_FILE, loadConfig, publishUrls } from '../src/config.js';
import { encodePayload, JAIL_NAME, parseAction, topicFor } from '../src/event.js';
import { parseAddress } from '../src/ip.js';
import { clientCredentials } from '../src/mqtt-credentials.js';
import { reportFatal } from '../src/program.js';
import type { Message } from './mqtt-publish.js';
import { publishToFirst } from './publish-failover.js';

const EXIT_USAGE = 2;

const program = new Command('syncfail2ban-client')
  .description('Publishes fail2ban bans and unbans to the syncfail2ban network.')
  .usage('[--config FILE] (-a <jail> <action> <ip> | -f <jail> | status [--json])')
  .option('-c, --config <file>', 'config file', DEFAULT_CONFIG_FILE)
  .option('-a, --announce <jail>', 'publish one event: -a <jail> <ban|unban|banip|unbanip> <ip> (the fail2ban action)')
  .option('-s, --send <jail>', 'same as -a (kept from the original client)')
  .option('-f, --full-sync <jail>', "re-send every address currently banned in <jail> by the local fail2ban")
  .option('--json', 'with status: print the status as JSON, for scripts')
  .argument('[action]', 'with -a: ban, unban, banip or unbanip; alone: "status" asks the running agent how it is (exit 1 when unhealthy)')
  .argument('[ip]', 'IPv4/IPv6 address or CIDR network')
  .addHelpText('after', '\nExamples:\n  syncfail2ban-client -a sshd banip 203.0.113.7\n  syncfail2ban-client -f sshd\n  syncfail2ban-client status')
  .showHelpAfterError()
  .parse();

const options = program.opts<{ config: string; announce?: string; send?: string; fullSync?: string; json?: boolean }>();
const [actionText, ip] = program.args;

function usage(message: string): never {
  process.stderr.write(`syncfail2ban-client: ${message}\n`);
  process.exit(EXIT_USAGE);
}

function checkJail(jail: string): string {
  if (!JAIL_NAME.test(jail)) usage(`${JSON.stringify(jail)} is not a valid jail name`);
  return jail;
}

try {
  const announceJail = options.announce ?? options.send;
  if (announceJail !== undefined && options.fullSync !== undefined) usage('give either -a or -f, not both');
  if (announceJail === undefined && options.fullSync === undefined && actionText === 'status') {
    if (ip !== undefined) usage('status takes no argument');
    const config = loadConfig(options.config);
    const { printStatus, requestStatus } = await import('./status.js');
    process.exit(printStatus(await requestStatus(config.controlSocket, config.connectionTimeoutS * 1000), options.json === true));
  }
  if (announceJail === undefined && options.fullSync === undefined) program.help({ error: true });

  const config = loadConfig(options.config);
  const timeoutMs = config.connectionTimeoutS * 1000;
  let messages: Message[];
  if (announceJail !== undefined) {
    const jail = checkJail(announceJail);
    const action = parseAction(actionText ?? '');
    if (!action) usage(`action must be ban, unban, banip or unbanip, not ${JSON.stringify(actionText ?? '')}`);
    const parsed = parseAddress(ip ?? '');
    if (!parsed.ok) usage(`${JSON.stringify(ip ?? '')} is not a valid address: ${parsed.reason}`);
    messages = [{ topic: topicFor(jail, action), payload: encodePayload(parsed.address, config.nodeId) }];
  } else {
    const jail = checkJail(options.fullSync!);
    const { readJailBans } = await import('./full-sync.js');
    messages = (await readJailBans(config.fail2banSocket, jail, timeoutMs)).map((address) => ({
      topic: topicFor(jail, 'ban'),
      payload: encodePayload(address, config.nodeId),
    }));
  }
  await publishToFirst(publishUrls(config), messages, { timeoutMs, ...clientCredentials(config.mqtt) });
  if (options.fullSync !== undefined) process.stdout.write(`published ${messages.length} ban(s) of jail ${options.fullSync}\n`);
} catch (error) {
  reportFatal('syncfail2ban-client', error);
}
