import { readFileSync, statSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import ini from 'ini';
import { closestName } from './closest-name.js';
import { ConfigError, SectionReader } from './config-reader.js';
import {
  type BrokerSecurity,
  type Credentials,
  type RateLimit,
  readBrokerSecurity,
  readClientSecurity,
  readRateLimit,
} from './config-security.js';
import { type ClusterConfig, hubOrder, readBrokerUrls, readCluster } from './config-hub.js';
import { JAIL_NAME, NODE_ID } from './event.js';
import { type NftablesConfig, readNftables } from './config-nftables.js';
import { type CanonicalAddress, parseAddress } from './ip.js';
import { shippedFile } from './shipped-file.js';

export { ConfigError } from './config-reader.js';

export const DEFAULT_CONFIG_FILE = '/etc/syncfail2ban/config.cfg';
export const DEFAULT_MQ_PORT = 18862;
export const DEFAULT_CONTROL_SOCKET = '/run/syncfail2ban/control.sock';
export const DEFAULT_BROKER_CONTROL_SOCKET = '/run/syncfail2ban-broker/control.sock';

/** The widest network one ban may cover unless min_prefix_ipv4 / min_prefix_ipv6 say otherwise. */
export const DEFAULT_MIN_PREFIX: MinPrefix = { 4: 16, 6: 32 };

export interface MinPrefix {
  4: number;
  6: number;
}

export interface Endpoint {
  host: string;
  port: number;
}

export interface Firewall {
  /** As written in opn_fw_ip (`192.0.2.1`, `192.0.2.1:8443`, `http://192.0.2.1`): the [opn_keys] prefix. */
  name: string;
  baseUrl: string;
  key: string;
  secret: string;
}

export interface OpnsenseConfig {
  enabled: boolean;
  firewalls: Firewall[];
  verifyTls: boolean;
  /** opn_ca_file's PEM content, read at load; only when some firewall is reached over https. */
  ca?: Buffer;
  /** primary jail -> alias name */
  aliases: Map<string, string>;
  reconcileIntervalS: number;
  killStates: boolean;
}

export interface Config {
  file: string;
  nodeId: string;
  logDebug: boolean;
  /** Log what would be applied to fail2ban and OPNsense instead of applying it. */
  dryRun: boolean;
  /** Apply received events to the local sync jails. */
  f2bSync: boolean;
  fail2banSocket: string;
  /** Mesh: where the embedded broker listens and this host's CLI publishes. */
  mq: Endpoint;
  /** Mesh: brokers speak TLS (mq_tls_cert is set), this host's and its peers' alike: a fleet shares one setting. */
  meshTls: boolean;
  /** Mesh: the peers' brokers to subscribe to. */
  syncServers: Endpoint[];
  /** Hub: the broker everybody publishes to and subscribes from, or the instances of a clustered hub; empty in a mesh. */
  brokerUrls: string[];
  /** A standalone broker that is one instance of a clustered hub. */
  cluster?: ClusterConfig;
  connectionTimeoutS: number;
  /** primary jail -> local sync jail */
  jails: Map<string, string>;
  ignoreIp: CanonicalAddress[];
  /** The widest network (shortest prefix) one received ban may cover, per family. */
  minPrefix: MinPrefix;
  stateDir: string;
  /** All parts of a snapshot must arrive within this long of its first, or it only adds. */
  snapshotTimeoutS: number;
  /** Bounds of the holdings store: over all origins and jails, and per origin and primary jail. */
  holdingLimits: { total: number; perOrigin: number };
  /** Unix socket where the agent answers `syncfail2ban-client status`. */
  controlSocket: string;
  /** Unix socket where the agent takes this host's bans from fail2ban's Python action, to publish them. */
  actionSocket: string;
  /** Where the Prometheus endpoint listens; absent when metrics_port is 0 (off). */
  metrics?: MetricsEndpoint;
  /** syncfail2ban-broker's own control socket and metrics ([broker]), apart from the agent's: one host may run both. */
  brokerReporting: Reporting;
  opnsense: OpnsenseConfig;
  /** The kernel-sets sink (nft_sync). */
  nftables: NftablesConfig;
  /** What the embedded (mesh) or standalone broker demands of connecting hosts. */
  broker: BrokerSecurity;
  /** Credentials and TLS settings for connecting to brokers. */
  mqtt: Credentials;
  rateLimit: RateLimit;
  /** Keys and sections nobody reads (usually typos), with the known name closest to each. */
  unknownKeys: UnknownName[];
  /** Worth one info line at start-up: keys of the original this program has no use for. */
  notices: string[];
  /** Other things worth a warning at start-up (loose permissions on secrets). */
  warnings: string[];
}

/** A key (`mq_prot`, `[opn_keys] x_key`) or section (`[jail]`) no reader asks for. */
export interface UnknownName {
  name: string;
  /** The known name it is closest to, when one is close: "did you mean ...?". */
  suggestion?: string;
}

const KNOWN_SECTIONS = ['default', 'jails', 'opn_aliases', 'opn_keys', 'users', 'broker'];

/**
 * Who loads the config. A service (agent, broker, --check) reads and checks every file the
 * config names, at load. The client runs once per ban: it reads only the files it publishes
 * with (mqtt_password_file, and the mqtt TLS files when it publishes over mqtts://), so
 * `broker.tls`, `cluster.redisCa` and `opnsense.ca` stay absent in its config.
 */
export type ConfigUse = 'service' | 'client';

/** Reads and validates a config file; throws ConfigError with one actionable message. */
export function loadConfig(file: string, use: ConfigUse = 'service'): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ConfigError(`${file}: no such config file; fix: create it (${shippedFile('etc/config.cfg')} is a documented example) or pass --config FILE`);
    }
    if (code === 'EACCES') throw new ConfigError(`${file}: permission denied; fix: run as root or make the file readable by this user`);
    throw new ConfigError(`${file}: cannot read it (${(error as Error).message})`);
  }
  const config = parseConfig(text, file, use);
  const hasSecrets = /^\s*(mqtt_password|metrics_token|cluster_key)\s*=\s*\S/m.test(text) || Boolean(config.cluster && new URL(config.cluster.redisUrl).password) || config.opnsense.firewalls.some((firewall) => firewall.secret);
  if (hasSecrets && statSync(file).mode & 0o004) {
    config.warnings.push(`${file} holds secrets and can be read by every user; fix: chmod 600 ${file}`);
  }
  return config;
}

export function parseConfig(text: string, file: string, use: ConfigUse = 'service'): Config {
  return parse(text, file, use).config;
}

/** Every key the parser reads in the general part ([default] or the top), and the sections it knows. */
export function knownConfigNames(): { keys: string[]; sections: string[] } {
  const { general } = parse('node_id = any', '(known names)', 'service');
  return { keys: [...general.known()].sort(), sections: [...KNOWN_SECTIONS] };
}

function parse(text: string, file: string, use: ConfigUse): { config: Config; general: SectionReader } {
  const raw = ini.parse(text) as Record<string, unknown>;
  const top: Record<string, unknown> = {};
  const sections: Record<string, Record<string, unknown>> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) sections[key] = value as Record<string, unknown>;
    else top[key] = value;
  }
  // The README's minimal config puts keys at the top; the shipped file puts them under [default].
  const general = new SectionReader(file, '', { ...top, ...(sections.default ?? {}) });
  const jailsSection = new SectionReader(file, 'jails', sections.jails ?? {});
  const aliasSection = new SectionReader(file, 'opn_aliases', sections.opn_aliases ?? {});
  const keySection = new SectionReader(file, 'opn_keys', sections.opn_keys ?? {});
  const usersSection = new SectionReader(file, 'users', sections.users ?? {});
  const brokerSection = new SectionReader(file, 'broker', sections.broker ?? {});
  const warnings: string[] = [];

  const nodeId = general.string('node_id', hostname());
  if (!NODE_ID.test(nodeId)) {
    general.fail('node_id', `${JSON.stringify(nodeId)} is not a valid node id`, 'use letters, digits, "-", "_" and "." (at most 64)');
  }
  const mqPort = general.integer('mq_port', DEFAULT_MQ_PORT, 1, 65535);
  const mqIp = general.string('mq_ip', '');
  if (mqIp && !isIP(mqIp)) general.fail('mq_ip', `${JSON.stringify(mqIp)} is not an IP address`, 'give this host\'s address to listen on, or leave it blank');
  const service = use === 'service';
  const broker = readBrokerSecurity(general, usersSection, service);
  // Validated in pairs by readBrokerSecurity; a fleet shares one setting, so peers speak TLS when this host does.
  const meshTls = general.string('mq_tls_cert', '') !== '';
  const brokerUrls = readBrokerUrls(general);
  const controlSocket = readSocketPath(general, 'control_socket', DEFAULT_CONTROL_SOCKET);
  const publishesOverTls = brokerUrls.length ? brokerUrls.some((url) => url.startsWith('mqtts:')) : meshTls;

  const jails = readJailMap(jailsSection, 'sync jail');
  const config: Config = {
    file,
    nodeId,
    logDebug: general.boolean('log_debug', false),
    dryRun: general.boolean('dry_run', false),
    f2bSync: general.boolean('f2b_sync', true),
    fail2banSocket: general.string('fail2ban_socket', '/var/run/fail2ban/fail2ban.sock'),
    mq: { host: mqIp || primaryIpv4(), port: mqPort },
    meshTls,
    syncServers: general.list('sync_servers').map((entry) => parseEndpoint(general, 'sync_servers', entry, mqPort)),
    connectionTimeoutS: general.seconds('connection_timeout', 10),
    jails,
    ignoreIp: general.list('ignoreip').map((entry) => {
      const parsed = parseAddress(entry, { anyPrefix: true });
      if (!parsed.ok) return general.fail('ignoreip', `${JSON.stringify(entry)}: ${parsed.reason}`, 'list IP addresses or CIDR networks separated by spaces');
      return parsed.address;
    }),
    minPrefix: {
      4: general.integer('min_prefix_ipv4', DEFAULT_MIN_PREFIX[4], 8, 32),
      6: general.integer('min_prefix_ipv6', DEFAULT_MIN_PREFIX[6], 16, 128),
    },
    stateDir: general.string('state_dir', '/var/lib/syncfail2ban'),
    snapshotTimeoutS: general.seconds('snapshot_timeout', 60),
    holdingLimits: readHoldingLimits(general),
    controlSocket,
    // Beside the control socket by default: /run/syncfail2ban/action.sock.
    actionSocket: readSocketPath(general, 'action_socket', join(dirname(controlSocket), 'action.sock')),
    brokerReporting: readReporting(brokerSection, DEFAULT_BROKER_CONTROL_SOCKET),
    opnsense: readOpnsense(general, aliasSection, keySection, service),
    nftables: readNftables(general, jails),
    broker,
    mqtt: readClientSecurity(general, nodeId, warnings, service || publishesOverTls),
    rateLimit: readRateLimit(general),
    brokerUrls,
    unknownKeys: [],
    notices: readOriginalLogRotation(general),
    warnings,
  };
  const cluster = readCluster(general, service);
  if (cluster) config.cluster = cluster;
  const metrics = readMetrics(general);
  if (metrics) config.metrics = metrics;

  // The known names are what the readers above asked for: a key added to a reader is known here.
  const unknown = (names: string[], known: Iterable<string>, show: (name: string) => string): UnknownName[] =>
    names.map((name) => {
      const suggestion = closestName(name, known);
      return { name: show(name), ...(suggestion === undefined ? {} : { suggestion: show(suggestion) }) };
    });
  config.unknownKeys = [
    ...unknown(general.unused(), general.known(), (key) => key),
    ...unknown(keySection.unused(), keySection.known(), (key) => `[opn_keys] ${key}`),
    ...unknown(brokerSection.unused(), brokerSection.known(), (key) => `[broker] ${key}`),
    ...unknown(Object.keys(sections).filter((name) => !KNOWN_SECTIONS.includes(name)), KNOWN_SECTIONS, (name) => `[${name}]`),
  ];
  return { config, general };
}

/** The original rotated its own log file; here the logs go to the journal, which journald rotates. */
function readOriginalLogRotation(general: SectionReader): string[] {
  const set = ['log_max_size', 'log_backup_count'].filter((key) => general.string(key, '') !== '');
  for (const key of set) general.integer(key, 0, 0, Number.MAX_SAFE_INTEGER);
  if (set.length === 0) return [];
  return [`${set.join(' and ')} (the original's log file rotation) ${set.length > 1 ? 'are' : 'is'} not used: the logs go to the journal, which journald rotates (SystemMaxUse= in journald.conf)`];
}

function readHoldingLimits(general: SectionReader): Config['holdingLimits'] {
  const total = general.integer('max_holdings', 2_000_000, 1_000, 100_000_000);
  const perOrigin = general.integer('max_holdings_per_origin', 100_000, 1, 100_000_000);
  if (perOrigin > total) general.fail('max_holdings_per_origin', `${perOrigin} is more than max_holdings (${total})`, 'keep it at most max_holdings: one origin may not fill the store');
  return { total, perOrigin };
}

function readSocketPath(section: SectionReader, key: string, fallback: string): string {
  const path = section.string(key, fallback);
  if (!path.startsWith('/')) section.fail(key, `${JSON.stringify(path)} is not an absolute path`, `write a path such as ${fallback}`);
  // sun_path holds 108 bytes including the terminating NUL.
  if (Buffer.byteLength(path) > 107) section.fail(key, 'is longer than a unix socket path may be (107 bytes)', 'choose a shorter path');
  return path;
}

/** Where a program answers `status`, and its Prometheus endpoint (absent: off). */
export interface Reporting {
  controlSocket: string;
  metrics?: MetricsEndpoint;
}

/** [broker]: control_socket, metrics_port, metrics_host and metrics_token, as the agent's at the top, for syncfail2ban-broker. */
function readReporting(section: SectionReader, defaultSocket: string): Reporting {
  const metrics = readMetrics(section);
  return { controlSocket: readSocketPath(section, 'control_socket', defaultSocket), ...(metrics ? { metrics } : {}) };
}

export interface MetricsEndpoint extends Endpoint {
  /** When set, a scrape must present it (Authorization: Bearer <token>, or Basic with it as the password). */
  token?: string;
}

/** metrics_port 0 (the default) turns the Prometheus endpoint off. */
function readMetrics(section: SectionReader): MetricsEndpoint | undefined {
  const port = section.integer('metrics_port', 0, 0, 65535);
  const host = section.string('metrics_host', '127.0.0.1');
  if (!isIP(host)) section.fail('metrics_host', `${JSON.stringify(host)} is not an IP address`, 'give the address to listen on, e.g. 127.0.0.1 (the default) or 0.0.0.0');
  const token = section.string('metrics_token', '');
  if (token && !/^[\x21-\x7e]{16,256}$/.test(token)) {
    section.fail('metrics_token', 'is not 16 to 256 printable characters without spaces', 'set it to a long random string, e.g. the output of: openssl rand -hex 32');
  }
  if (port === 0) return undefined;
  return token ? { host, port, token } : { host, port };
}

function readJailMap(section: SectionReader, valueName: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const [jail, value] of section.entries()) {
    if (!JAIL_NAME.test(jail)) {
      section.fail(jail, 'is not a valid jail name', 'use letters, digits, "-", "_" and "." (at most 64)');
    }
    if (!JAIL_NAME.test(value)) {
      section.fail(jail, `${valueName} ${JSON.stringify(value)} is not a valid name`, `write "${jail} = <${valueName}>"`);
    }
    map.set(jail, value);
  }
  return map;
}

function readOpnsense(general: SectionReader, aliases: SectionReader, keys: SectionReader, readFiles: boolean): OpnsenseConfig {
  const enabled = general.boolean('opn_fw_sync', false);
  const firewalls = general.list('opn_fw_ip').map((name): Firewall => {
    const baseUrl = firewallUrl(general, name);
    const key = keys.string(`${name}_key`, '');
    const secret = keys.string(`${name}_secret`, '');
    if (enabled && (!key || !secret)) {
      keys.fail(`${name}_key`, `no API key and secret for firewall ${name}`, `add "${name}_key = ..." and "${name}_secret = ..." under [opn_keys]`);
    }
    return { name, baseUrl, key, secret };
  });
  if (enabled && firewalls.length === 0) {
    general.fail('opn_fw_ip', 'opn_fw_sync is true but no firewall is listed', 'list the firewalls\' addresses, or set opn_fw_sync = false');
  }
  const config: OpnsenseConfig = {
    enabled,
    firewalls,
    verifyTls: general.boolean('opn_verify', true),
    aliases: readJailMap(aliases, 'alias'),
    reconcileIntervalS: general.seconds('opn_reconcile_interval', 300),
    killStates: general.boolean('opn_kill_states', false),
  };
  const https = enabled && firewalls.some((firewall) => firewall.baseUrl.startsWith('https:'));
  const ca = general.string('opn_ca_file', '') && https && readFiles ? general.readNamedFile('opn_ca_file') : undefined;
  if (ca && !ca.content.includes('-----BEGIN CERTIFICATE-----')) {
    general.fail('opn_ca_file', `${ca.path} holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`, 'point opn_ca_file at the PEM certificate the firewalls present (or their CA)');
  }
  if (ca) config.ca = ca.content;
  return config;
}

/**
 * `192.0.2.1`, `192.0.2.1:8443`, `fw.example.net` or an explicit `http(s)://...` URL, which
 * may have a path prefix (a GUI behind a reverse proxy: `https://proxy.example.net/fw1`).
 */
function firewallUrl(general: SectionReader, name: string): string {
  if (/^https?:\/\//.test(name)) {
    let url: URL;
    try {
      url = new URL(name);
    } catch {
      return general.fail('opn_fw_ip', `${JSON.stringify(name)} is not a URL`, 'write an address, address:port or https://address:port');
    }
    const shown = `${url.origin}${url.pathname}`;
    if (url.username !== '' || url.password !== '') {
      general.fail('opn_fw_ip', `the entry for ${url.origin} contains credentials`, 'remove "user:password@" and put the API key and secret under [opn_keys]');
    }
    if (url.search !== '' || url.hash !== '') general.fail('opn_fw_ip', `${shown} has a query or fragment`, 'write the firewall\'s base URL only');
    const prefix = url.pathname.replace(/\/+$/, '');
    if (/\/api$/i.test(prefix)) general.fail('opn_fw_ip', `${shown} ends in /api`, `write the base URL without /api (${url.origin}${prefix.slice(0, -4)})`);
    return `${url.origin}${prefix}`;
  }
  const { host, port } = parseEndpoint(general, 'opn_fw_ip', name, 443);
  return port === 443 ? `https://${urlHost(host)}` : `https://${urlHost(host)}:${port}`;
}

/** `host`, `host:port`, `[v6]:port` or a bare IPv6 address. */
export function parseEndpoint(section: SectionReader, key: string, entry: string, defaultPort: number): Endpoint {
  const bad = (): never =>
    section.fail(key, `${JSON.stringify(entry)} is not host or host:port`, 'write entries such as 192.0.2.10 or 192.0.2.10:18862, separated by spaces');
  const bracketed = /^\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?$/.exec(entry);
  const [host, portText] = bracketed
    ? [bracketed[1]!, bracketed[2]]
    : isIP(entry) === 6
      ? [entry, undefined]
      : entry.split(':').length <= 2
        ? (entry.split(':') as [string, string | undefined])
        : bad();
  const port = portText === undefined ? defaultPort : /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535) || !(isIP(host) !== 0 || HOSTNAME.test(host))) bad();
  return { host, port };
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** The address the original binds to when mq_ip is blank: the first non-internal IPv4. */
function primaryIpv4(): string {
  for (const list of Object.values(networkInterfaces())) {
    const found = list?.find((info) => info.family === 'IPv4' && !info.internal);
    if (found) return found.address;
  }
  return '127.0.0.1';
}

/** The brokers this host publishes to, first that answers: the hub's instances, or its own embedded broker. */
export function publishUrls(config: Config): string[] {
  return config.brokerUrls.length ? hubOrder(config.brokerUrls, config.nodeId) : [endpointUrl(config.mq, config.meshTls)];
}

export function endpointUrl({ host, port }: Endpoint, tls = false): string {
  return `${tls ? 'mqtts' : 'mqtt'}://${urlHost(host)}:${port}`;
}

/** Mesh: the brokers of the peers in sync_servers, each once, without this host's own. */
export function peerUrls(config: Config): string[] {
  const tls = config.meshTls;
  const own = endpointUrl(config.mq, tls);
  return [...new Set(config.syncServers.map((peer) => endpointUrl(peer, tls)))].filter((url) => url !== own);
}

/** A host as it stands in a URL: IPv6 addresses in brackets. */
export function urlHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

/** A URL's host as an address or name: IPv6 addresses without their brackets. */
export function urlHostname(url: string | URL): string {
  return new URL(url).hostname.replace(/^\[|\]$/g, '');
}
