import { ConfigError, loadConfig, type Config } from '../../src/config.js';
import { Fail2banClient } from '../../src/fail2ban/client.js';
import { shippedFile } from '../../src/shipped-file.js';
import { checkFirewalls } from './firewall-checks.js';
import { checkNftables } from './nftables-checks.js';
import { checkBrokers, checkListen } from './network-checks.js';
import type { Finding } from './finding.js';
import { checkJails } from './jail-checks.js';
import { checkServiceUnit } from './unit-checks.js';

/**
 * `syncfail2ban --check`: validates the config, the network (listening, peers or hub,
 * firewalls), the fail2ban side and the systemd unit, prints each finding (a problem with its
 * fix) and returns the exit code: 0 when nothing stops this host from working (warnings, such
 * as peers that do not answer yet on a new fleet, are printed), 1 otherwise.
 */
export async function runDoctor(file: string, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const findings = await diagnose(file);
  for (const finding of findings) out.write(formatFinding(finding));
  const failures = findings.filter((finding) => finding.level === 'fail').length;
  const warnings = findings.filter((finding) => finding.level === 'warn').length;
  out.write(
    failures > 0
      ? `${failures} problem(s) found${warnings > 0 ? `, ${warnings} warning(s)` : ''}; fix them and run syncfail2ban --check again\n`
      : warnings > 0
        ? `nothing stops this host from working; ${warnings} warning(s) above (peers that do not answer yet are expected while a fleet is being set up)\n`
        : 'all good\n',
  );
  return failures === 0 ? 0 : 1;
}

async function diagnose(file: string): Promise<Finding[]> {
  let config: Config;
  try {
    config = loadConfig(file);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return [{ level: 'fail', subject: 'config', message: error.message }];
  }
  const findings: Finding[] = [
    { level: 'ok', subject: 'config', message: `${file} is valid (node id ${config.nodeId}, ${config.brokerUrls.length ? `hub ${config.brokerUrls.join(' ')}` : 'mesh'}, ${config.jails.size} jail pair(s))` },
    ...config.unknownKeys.map(({ name, suggestion }): Finding => ({
      level: 'fail',
      subject: 'config',
      message: `unknown ${name.startsWith('[') && !name.includes(' ') ? 'section' : 'key'} ${name} is ignored${suggestion ? `: did you mean ${suggestion}?` : ''}`,
      fix: suggestion ? `rename it to ${suggestion}` : `correct its spelling or remove it (${shippedFile('etc/config.cfg')} lists every key)`,
    })),
    ...config.warnings.map((warning): Finding => ({ level: 'warn', subject: 'config', message: warning })),
    ...config.notices.map((notice): Finding => ({ level: 'ok', subject: 'config', message: notice })),
  ];
  findings.push(...emptyJails(config));
  // Everything that waits on the network at once: the whole check takes about one connection_timeout.
  const timeoutMs = config.connectionTimeoutS * 1000;
  const checks = await Promise.all([
    checkListen(config),
    checkBrokers(config),
    config.jails.size > 0 ? checkFail2ban(config) : [],
    checkFirewalls(config.opnsense, timeoutMs),
    checkNftables(config),
    checkServiceUnit(),
  ]);
  return [...findings, ...checks.flat()];
}

function emptyJails(config: Config): Finding[] {
  if (config.jails.size > 0) return [];
  if (config.f2bSync) {
    return [{
      level: 'fail',
      subject: '[jails]',
      message: 'is empty while f2b_sync is on: this host would neither publish nor apply any ban',
      fix: `add "<primary jail> = <sync jail>" lines under [jails], e.g. "sshd = sshd-sync"${config.opnsense.enabled || config.nftables.enabled ? `, or set f2b_sync = false on a host that only runs ${config.opnsense.enabled ? 'the OPNsense bridge' : 'the nftables sets'}` : ''}`,
    }];
  }
  if (config.nftables.enabled) return [{ level: 'ok', subject: '[jails]', message: `is empty: received bans of ${config.nftables.jails.join(', ')} go to the nftables sets (nft_jails)` }];
  return config.opnsense.enabled
    ? [{ level: 'ok', subject: '[jails]', message: 'is empty: this host only runs the OPNsense bridge' }]
    : [{ level: 'warn', subject: '[jails]', message: 'is empty and the OPNsense bridge is off: this host does nothing', fix: 'add "<primary jail> = <sync jail>" lines under [jails], or turn on the OPNsense bridge' }];
}

async function checkFail2ban(config: Config): Promise<Finding[]> {
  const client = new Fail2banClient(config.fail2banSocket, { timeoutMs: config.connectionTimeoutS * 1000 });
  try {
    await client.ping();
    return [{ level: 'ok', subject: 'fail2ban', message: `answers on ${config.fail2banSocket}` }, ...(await checkJails(config, client))];
  } catch (error) {
    return [{
      level: 'fail',
      subject: 'fail2ban',
      message: (error as Error).message,
      fix: `start fail2ban ("systemctl start fail2ban"), run this check as root, or set fail2ban_socket in ${config.file}`,
    }];
  } finally {
    await client.close();
  }
}

const LABEL: Record<Finding['level'], string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };

function formatFinding({ level, subject, message, fix }: Finding): string {
  return `${LABEL[level]}  ${subject}: ${message}\n${fix ? `      fix: ${fix}\n` : ''}`;
}
