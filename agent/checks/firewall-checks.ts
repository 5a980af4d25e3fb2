import { request } from 'node:http';
import { connect } from 'node:tls';
import { urlHostname, type Firewall, type OpnsenseConfig } from '../../src/config.js';
import type { Finding } from './finding.js';
import { probeFirewall } from './opnsense-probe.js';

/** One check of one firewall; undefined when it has nothing to say. */
type FirewallCheck = (firewall: Firewall, opnsense: OpnsenseConfig, timeoutMs: number) => Promise<Finding | Finding[] | undefined>;

/** What `--check` asks of each firewall in opn_fw_ip, all at once: the bridge's API probe (key, privileges, aliases) among them. */
const FIREWALL_CHECKS: FirewallCheck[] = [plainHttpUnderVerifyOff, probeFirewall];

export async function checkFirewalls(opnsense: OpnsenseConfig, timeoutMs: number): Promise<Finding[]> {
  if (!opnsense.enabled) return [];
  const results = await Promise.all(opnsense.firewalls.flatMap((firewall) => FIREWALL_CHECKS.map((check) => check(firewall, opnsense, timeoutMs))));
  return results.flat().filter((finding): finding is Finding => finding !== undefined);
}

/**
 * The original's shipped config said `opn_verify = false` "if SSL is not used on OPNsense":
 * there it meant plain http, here it means HTTPS without verification. A firewall that
 * answers plain http but no HTTPS was configured the original's way.
 */
async function plainHttpUnderVerifyOff(firewall: Firewall, opnsense: OpnsenseConfig, timeoutMs: number): Promise<Finding | undefined> {
  const url = new URL(firewall.baseUrl);
  if (opnsense.verifyTls || url.protocol !== 'https:') return undefined;
  const host = urlHostname(url);
  if (await answersTls(host, Number(url.port) || 443, timeoutMs)) return undefined;
  // The original reached such a firewall at http://<address>, port 80; with a port given, on that port.
  const httpPort = Number(url.port) || 80;
  if (!(await answersHttp(host, httpPort, timeoutMs))) return undefined;
  const httpUrl = `http://${url.host.replace(/:\d+$/, '')}${httpPort === 80 ? '' : `:${httpPort}`}${url.pathname.replace(/\/$/, '')}`;
  return {
    level: 'fail',
    subject: `firewall ${firewall.name}`,
    message: `answers plain http on port ${httpPort} but no HTTPS on ${url.port || 443}: opn_verify = false meant http in the original syncfail2ban; here it means HTTPS without certificate checks, so the bridge cannot reach it`,
    fix: `turn on HTTPS in OPNsense and set opn_verify = true (with opn_ca_file), or, to keep plain http (the API key crosses the network in clear), write "${httpUrl}" in opn_fw_ip and rename its [opn_keys] entries to ${httpUrl}_key and ${httpUrl}_secret`,
  };
}

/** Whether host:port completes a TLS handshake (any certificate). */
function answersTls(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, rejectUnauthorized: false, timeout: timeoutMs }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('timeout', () => socket.destroy());
    socket.on('error', () => resolve(false));
    socket.on('close', () => resolve(false));
  });
}

/** Whether host:port answers an HTTP request at all (any status). */
function answersHttp(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: '/', method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}
