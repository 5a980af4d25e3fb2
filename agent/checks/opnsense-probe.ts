import type { Firewall, OpnsenseConfig } from '../../src/config.js';
import { pino, type Logger } from 'pino';
import { firewallClient, OpnsenseError } from '../sinks/opnsense/api/client.js';
import { AliasInfoCache, judgeAlias } from '../sinks/opnsense/alias-info.js';
import type { Finding } from './finding.js';
import { onlyUnreachable } from './unreachable.js';

/** What the alias-info cache would log is a finding here. */
const SILENT: Logger = pino({ level: 'silent' });

/**
 * `syncfail2ban --check` for the OPNsense bridge, on one firewall: that it answers over TLS
 * as configured, takes the credentials, grants each privilege the configured features need,
 * and has each mapped alias with a type that keeps what the bridge adds. Changes nothing on
 * the firewall.
 */
export async function probeFirewall(firewall: Firewall, config: OpnsenseConfig, timeoutMs: number): Promise<Finding[]> {
  const client = firewallClient(firewall, config, { timeoutMs });
  const subject = `OPNsense ${client.firewall}`;
  const findings: Finding[] = [];
  const fail = (error: unknown): void => {
    if (!(error instanceof OpnsenseError)) throw error;
    // A firewall that does not answer yet does not stop this host; the bridge keeps trying.
    const unreachable = error.kind === 'unreachable' && onlyUnreachable(error);
    findings.push({ level: unreachable ? 'warn' : 'fail', subject, message: error.message });
  };
  try {
    let tables: string[];
    try {
      tables = await client.tableNames();
    } catch (error) {
      fail(error);
      return findings; // unreachable, TLS, credentials or the basic privilege: nothing else can be checked
    }
    const tls = client.firewall.startsWith('http:') ? 'plain HTTP (credentials cross the network in clear)' : config.verifyTls ? 'TLS verified' : 'TLS NOT verified (opn_verify = false)';
    findings.push({ level: client.firewall.startsWith('http:') || !config.verifyTls ? 'warn' : 'ok', subject, message: `answers (${tls}); the API key is accepted and may use alias_util` });

    const aliases = [...new Set(config.aliases.values())];
    const info = new AliasInfoCache(client, SILENT);
    for (const alias of aliases) {
      try {
        const found = await info.get(alias);
        if (found.kind === 'unknown') {
          const exists = tables.includes(alias);
          findings.push(
            exists
              ? { level: 'warn', subject, message: `alias "${alias}" exists, but its type cannot be checked: the API user may not read alias config`, fix: 'grant "Firewall: Aliases" (read only) to the API user (System: Access: Users)' }
              : { level: 'fail', subject, message: `alias "${alias}" does not exist on the firewall`, fix: `create it in Firewall: Aliases (type External (advanced)); names are case-sensitive` },
          );
          continue;
        }
        const verdict = judgeAlias(client.firewall, alias, found);
        if (!verdict.usable) findings.push({ level: 'fail', subject, message: verdict.problem ?? `alias "${alias}" is not usable` });
        else if (verdict.caveat !== undefined) findings.push({ level: 'warn', subject, message: verdict.caveat });
        else findings.push({ level: 'ok', subject, message: `alias "${alias}" is an enabled External (advanced) alias` });
      } catch (error) {
        fail(error);
      }
    }
    if (aliases[0] !== undefined) {
      try {
        await client.checkWriteAccess(aliases[0]);
        findings.push({ level: 'ok', subject, message: 'the API user may change aliases (not read-only)' });
      } catch (error) {
        fail(error);
      }
    }
    if (config.killStates) {
      try {
        await client.checkKillStatesAccess();
        findings.push({ level: 'ok', subject, message: 'the API user may kill states (opn_kill_states)' });
      } catch (error) {
        fail(error);
      }
    }
  } finally {
    client.close();
  }
  return findings;
}
