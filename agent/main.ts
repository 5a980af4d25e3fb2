#!/usr/bin/env node
import { CLIENT_OPTIONS, misplacedOption } from '../cli/client.js';
import { parseCommandLine, unknownWord, usageError } from '../src/command-line.js';
import { DEFAULT_CONFIG_FILE } from '../src/config.js';
import { reportFatal } from '../src/program.js';

const NAME = 'syncfail2ban';
const argv = process.argv.slice(2);
const { values, positionals } = parseCommandLine(
  {
    name: NAME,
    summary: 'Keeps fail2ban bans in sync across servers over MQTT (the agent service). With -a, -s or -f it does what syncfail2ban-client does.',
    usage: ['[-c FILE]', '[-c FILE] --check', '[-c FILE] --dry-run', '[-c FILE] --remove-nft-table', '[-c FILE] -a <jail> <ban|unban|banip|unbanip> <ip>', '[-c FILE] -f <jail>', '[-c FILE] status [--fleet] [--json]'],
    options: [
      ...CLIENT_OPTIONS,
      { long: 'check', description: 'check the config, the network and the fail2ban jails, print each problem with its fix, then exit (0: all good, 1: problems)' },
      { long: 'dry-run', description: 'run everything, but only log what would be applied to fail2ban and OPNsense (as dry_run = true)' },
      { long: 'remove-nft-table', description: 'delete the nftables table of nft_sync (table inet syncfail2ban), ending the bans enforced in it, then exit; refused while the agent runs with nft_sync on' },
    ],
    maxPositionals: 2,
    epilogue: 'Exit codes: 0 ok, 1 failure, 2 bad arguments, 78 configuration error (a port in use included).\nSIGTERM stops it after applying what it accepted; SIGHUP re-reads the config.',
  },
  argv,
);
const file = (values.config as string | undefined) ?? DEFAULT_CONFIG_FILE;

if (values.announce !== undefined || values.send !== undefined || values['full-sync'] !== undefined) {
  // The original's usage line: `syncfail2ban -a <jail> <action> <ip>` / `syncfail2ban -f <jail>`.
  const { runClient } = await import('../cli/client.js');
  process.exit(await runClient(argv, NAME));
}
if (positionals[0] === 'status') {
  // The agent's status is the client's to ask for; answered here too, as an admin tries it first.
  const { runClient } = await import('../cli/client.js');
  process.exit(await runClient(argv, NAME));
}
if (positionals.length > 0) usageError(NAME, unknownWord('unexpected argument', positionals[0]!, ['status']));
const misplaced = misplacedOption(values, 'the service');
if (misplaced) usageError(NAME, misplaced);
if (values.check) {
  try {
    const { runDoctor } = await import('./checks/doctor.js');
    process.exit(await runDoctor(file));
  } catch (error) {
    reportFatal(`${NAME} --check`, error);
  }
}
if (values['remove-nft-table']) {
  try {
    const { removeNftTable } = await import('./sinks/nftables/remove-table.js');
    process.exit(await removeNftTable(file));
  } catch (error) {
    reportFatal(`${NAME} --remove-nft-table`, error);
  }
}
try {
  const { applyMemoryFlags } = await import('./memory/v8-flags.js');
  applyMemoryFlags();
  const { runService } = await import('./service.js');
  await runService(file, values['dry-run'] === true);
} catch (error) {
  reportFatal(NAME, error);
}
