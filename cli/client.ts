// Runs once per ban as a fail2ban action: imports only what publishing needs, and the
// build bundles it into one file (dist/cli/client.bundle.cjs) so that node starts it fast.
import { parseCommandLine, unknownWord, usageError, type CommandLine, type CommandSpec } from '../src/command-line.js';
import { DEFAULT_CONFIG_FILE, loadConfig, publishUrls, type Config } from '../src/config.js';
import { remainingBantime } from '../src/bantime.js';
import { encodePayload, JAIL_NAME, parseAction, topicFor } from '../src/event.js';
import { parseAddress } from '../src/ip.js';
import { fleetHosts, hostAddresses, NeverBanList, protectFleetAddresses } from '../src/never-ban.js';
import { reportFatal } from '../src/program.js';
import { SNAPSHOT_SPACING_MS, SNAPSHOT_WINDOW, snapshotBurstBytes, type Message } from './mqtt-publish.js';
import { publishToFirst } from './publish-failover.js';

/** The client's options; `syncfail2ban -a/-s/-f` (the original's usage) runs the client with the same. */
export const CLIENT_OPTIONS: CommandSpec['options'] = [
  { long: 'config', short: 'c', value: 'file', description: `config file (default: ${DEFAULT_CONFIG_FILE})` },
  { long: 'announce', short: 'a', value: 'jail', description: 'publish one event: -a <jail> <ban|unban|banip|unbanip> <ip> (the fail2ban action)' },
  { long: 'send', short: 's', value: 'jail', description: 'same as -a (kept from the original client)' },
  { long: 'bantime', value: 'seconds', description: "with -a ... ban: how long the ban lasts (fail2ban's <bantime>; -1: until unbanned, as without it); peers release it at its end even if they miss the unban" },
  { long: 'ban-start', value: 'epoch', description: "with --bantime: when the ban began, in seconds since 1970 (fail2ban's <time>; default: now), so that peers get the time it has left" },
  { long: 'full-sync', short: 'f', value: 'jail', description: "publish a snapshot of every address <jail> bans now in the local fail2ban: peers add what they lack and release this host's bans it no longer has" },
  { long: 'json', description: 'with status: print the status as JSON, for scripts' },
  { long: 'fleet', description: 'with status: show the fleet as the agent holds it instead: per jail, the bans each origin holds, when each origin was last heard from, and the addresses the most origins hold' },
];

/** Options that mean something with one command only: given with another, they would be silently ignored. */
const ONLY_WITH: Readonly<Record<string, string>> = { json: 'status', fleet: 'status', bantime: '-a', 'ban-start': '-a' };

/** A usage message for the first option given that `command` does not take; undefined when there is none. */
export function misplacedOption(values: Readonly<Record<string, unknown>>, command: string): string | undefined {
  const option = Object.keys(ONLY_WITH).find((name) => values[name] !== undefined && ONLY_WITH[name] !== command);
  return option === undefined ? undefined : `--${option} goes with ${ONLY_WITH[option]}, not ${command}`;
}

const spec = (name: string): CommandSpec => ({
  name,
  summary: 'Publishes fail2ban bans and unbans to the syncfail2ban network, and asks the running agent for its status.',
  usage: ['[-c FILE] -a <jail> <ban|unban|banip|unbanip> <ip> [--bantime <seconds> [--ban-start <epoch>]]', '[-c FILE] -f <jail>', '[-c FILE] status [--fleet] [--json]'],
  options: CLIENT_OPTIONS,
  maxPositionals: 2,
  epilogue: [
    '"status" exits 1 when the agent is unhealthy. Exit codes: 0 ok, 1 failure (broker or agent not reachable),',
    '2 bad arguments, 78 configuration error.',
    '',
    'Examples:',
    '  syncfail2ban-client -a sshd banip 203.0.113.7',
    '  syncfail2ban-client -a sshd banip 203.0.113.7 --bantime 600',
    '  syncfail2ban-client -f sshd',
    '  syncfail2ban-client status',
    '  syncfail2ban-client status --fleet',
  ].join('\n'),
});

/** Runs the client with these arguments; returns the exit code (or exits on bad arguments). */
export async function runClient(argv: string[], name: string): Promise<number> {
  const { values, positionals } = parseCommandLine(spec(name), argv);
  const usage: (message: string) => never = (message) => usageError(name, message);
  const checkJail = (jail: string): string => (JAIL_NAME.test(jail) ? jail : usage(`${JSON.stringify(jail)} is not a valid jail name`));
  const file = (values.config as string | undefined) ?? DEFAULT_CONFIG_FILE;
  const announceJail = (values.announce ?? values.send) as string | undefined;
  const fullSyncJail = values['full-sync'] as string | undefined;
  const [actionText, ip] = positionals;
  try {
    if (announceJail !== undefined && fullSyncJail !== undefined) usage('give either -a or -f, not both');
    const misplaced = misplacedOption(values, announceJail !== undefined ? '-a' : fullSyncJail !== undefined ? '-f' : 'status');
    if (misplaced) usage(misplaced);
    if (announceJail === undefined && fullSyncJail === undefined) {
      if (actionText !== 'status') usage(actionText === undefined ? 'nothing to do: give -a, -f or status' : unknownWord('unknown command', actionText, ['status']));
      if (ip !== undefined) usage('status takes no argument');
      const config = loadConfig(file, 'client');
      const timeoutMs = config.connectionTimeoutS * 1000;
      if (values.fleet === true) {
        const [{ printFleet }, { requestFleet }] = await Promise.all([import('./fleet-text.js'), import('../src/control-protocol.js')]);
        return printFleet(await requestFleet(config.controlSocket, timeoutMs), values.json === true);
      }
      const [{ printStatus }, { requestStatus }] = await Promise.all([import('../src/reporting/status-text.js'), import('../src/control-protocol.js')]);
      return printStatus(await requestStatus(config.controlSocket, timeoutMs), values.json === true);
    }
    const config = loadConfig(file, 'client');
    const timeoutMs = config.connectionTimeoutS * 1000;
    const publish = (messages: Message[], pacing: { window?: number; spacingMs?: number; burstBytes?: number } = {}) =>
      publishToFirst(publishUrls(config), messages, { timeoutMs, ...pacing, ...config.mqtt });
    if (announceJail !== undefined) {
      const jail = checkJail(announceJail);
      const action = parseAction(actionText ?? '') ?? usage(`action must be ban, unban, banip or unbanip, not ${JSON.stringify(actionText ?? '')}`);
      const parsed = parseAddress(ip ?? '');
      if (!parsed.ok) usage(`${JSON.stringify(ip ?? '')} is not a valid address: ${parsed.reason}`);
      // What every agent would refuse, as far as this host knows without the network; unbans pass (they only clear).
      const refusal = action === 'ban' ? neverBanHere(config).reason(parsed.address) : null;
      if (refusal !== null) throw new Error(`refusing to publish the ban of ${parsed.address.text} (${refusal}): agents never ban it; see docs/security.md, "Never-ban list"`);
      // An unban ends the ban whatever time it had left: its --bantime is not looked at.
      const bantime = action === 'ban' ? banLeft(values, usage) : undefined;
      await publish([{ topic: topicFor(jail, action), payload: encodePayload(parsed.address, { origin: config.nodeId, bantime }) }]);
    } else {
      const jail = checkJail(fullSyncJail!);
      if (positionals.length > 0) usage('-f takes only the jail');
      const { fullSync } = await import('./full-sync.js');
      const pacing = { window: SNAPSHOT_WINDOW, spacingMs: SNAPSHOT_SPACING_MS, burstBytes: snapshotBurstBytes(config.broker.limits.queueBytesPerClient) };
      return await fullSync(config, jail, (messages) => publish(messages, pacing));
    }
    return 0;
  } catch (error) {
    return reportFatal(name, error);
  }
}

/** The never-ban list of the agents, as this host knows it: special ranges, its own addresses, ignoreip, the fleet hosts written as addresses, min_prefix. */
function neverBanHere(config: Config): NeverBanList {
  const list = new NeverBanList(config.ignoreIp, hostAddresses(), config.minPrefix);
  protectFleetAddresses(list, fleetHosts(config));
  return list;
}

/** The seconds a ban given by --bantime and --ban-start has left now; undefined without --bantime (until unbanned). */
function banLeft(values: CommandLine['values'], usage: (message: string) => never): number | undefined {
  const { bantime, 'ban-start': banStart } = values as { bantime?: string; 'ban-start'?: string };
  if (bantime === undefined) {
    if (banStart !== undefined) usage('--ban-start goes with --bantime');
    return undefined;
  }
  if (!/^(-1|\d{1,12})$/.test(bantime)) usage(`--bantime ${JSON.stringify(bantime)} is not -1 or whole seconds`);
  const start = banStart === undefined ? Date.now() / 1000 : Number(banStart);
  if (banStart !== undefined && !(/^\d{1,12}(\.\d+)?$/.test(banStart) && start > 0)) usage(`--ban-start ${JSON.stringify(banStart)} is not a time in seconds since 1970`);
  return remainingBantime(Number(bantime), start, Date.now());
}
