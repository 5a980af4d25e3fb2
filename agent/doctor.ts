import { ConfigError, loadConfig, type Config } from '../src/config.js';
import { Fail2banClient } from '../src/fail2ban/client.js';
import { clientCredentials } from '../src/mqtt-credentials.js';
import { probeFirewalls } from './bridge/probe.js';
import { checkJails, type Finding } from './jail-checks.js';

/**
 * `syncfail2ban --check`: validates the config and the fail2ban side, prints each finding
 * (a problem with its fix) and returns the exit code: 0 when nothing failed, 1 otherwise.
 */
export async function runDoctor(file: string, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const findings = await diagnose(file);
  for (const finding of findings) out.write(formatFinding(finding));
  const failures = findings.filter((finding) => finding.level === 'fail').length;
  const warnings = findings.filter((finding) => finding.level === 'warn').length;
  out.write(
    failures === 0
      ? `all good${warnings > 0 ? ` (${warnings} warning(s))` : ''}\n`
      : `${failures} problem(s) found${warnings > 0 ? `, ${warnings} warning(s)` : ''}; fix them and run syncfail2ban --check again\n`,
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
    { level: 'ok', subject: 'config', message: `${file} is valid (node id ${config.nodeId}, ${config.brokerUrl ? `hub ${config.brokerUrl}` : 'mesh'}, ${config.jails.size} jail pair(s))` },
    ...config.unknownKeys.map((key): Finding => ({ level: 'warn', subject: 'config', message: `unknown key ${key} is ignored`, fix: 'correct its spelling or remove it (etc/config.cfg lists every key)' })),
    ...config.warnings.map((warning): Finding => ({ level: 'warn', subject: 'config', message: warning })),
  ];
  try {
    clientCredentials(config.mqtt); // reads the password, CA and certificate files it names
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    findings.push({ level: 'fail', subject: 'config', message: error.message });
  }
  if (config.opnsense.enabled) findings.push(...(await probeFirewalls(config.opnsense)));
  if (config.jails.size === 0) {
    findings.push({
      level: config.opnsense.enabled ? 'ok' : 'warn',
      subject: '[jails]',
      message: config.opnsense.enabled ? 'is empty: this host only runs the OPNsense bridge' : 'is empty: this host neither publishes nor applies any jail',
      ...(config.opnsense.enabled ? {} : { fix: 'add "<primary jail> = <sync jail>" lines under [jails], e.g. "sshd = sshd-sync"' }),
    });
    return findings;
  }
  const client = new Fail2banClient(config.fail2banSocket, { timeoutMs: config.connectionTimeoutS * 1000 });
  try {
    await client.ping();
    findings.push({ level: 'ok', subject: 'fail2ban', message: `answers on ${config.fail2banSocket}` });
    findings.push(...(await checkJails(config, client)));
  } catch (error) {
    findings.push({
      level: 'fail',
      subject: 'fail2ban',
      message: (error as Error).message,
      fix: `start fail2ban ("systemctl start fail2ban"), run this check as root, or set fail2ban_socket in ${file}`,
    });
  } finally {
    await client.close();
  }
  return findings;
}

const LABEL: Record<Finding['level'], string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };

function formatFinding({ level, subject, message, fix }: Finding): string {
  return `${LABEL[level]}  ${subject}: ${message}\n${fix ? `      fix: ${fix}\n` : ''}`;
}
