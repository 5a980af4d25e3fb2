import { statSync } from 'node:fs';
import type { SectionReader } from './config-reader.js';
import { NODE_ID } from './event.js';

/** What the embedded or standalone broker demands of the hosts that connect to it. */
export interface BrokerSecurity {
  /** account name -> scrypt hash (syncfail2ban-broker --hash-password); any entry turns authentication on. */
  users: Map<string, string>;
  /** Accounts whose bare-address events pass unstamped: manual bans and unbans for the whole fleet. */
  admins: Set<string>;
  /** Listen with TLS (PEM, read at load); with a client CA, require a client certificate whose CN is the host's identity. */
  tls?: { cert: Buffer; key: Buffer; clientCa?: Buffer };
  limits: BrokerLimits;
}

/** What one client may hold at the broker, so that memory stays bounded whatever clients send. */
export interface BrokerLimits {
  /** Subscriptions per connection; the fleet needs one (f2b/+/+). */
  subscriptionsPerClient: number;
  /** Open connections in all: the file descriptors beyond them stay for the program's own work. */
  connections: number;
  /** Open connections per source address (IPv6: per /64). */
  connectionsPerAddress: number;
  /** Open connections per authenticated account or certificate CN. */
  connectionsPerAccount: number;
  /** Bytes waiting to be sent to one client; what arrives beyond that for it is dropped and counted. */
  queueBytesPerClient: number;
}

export const DEFAULT_BROKER_LIMITS: BrokerLimits = {
  subscriptionsPerClient: 8,
  connections: 10_000,
  connectionsPerAddress: 64,
  connectionsPerAccount: 16,
  queueBytesPerClient: 8 * 1024 * 1024,
};

/** How agents and the CLI authenticate to brokers and verify them, with the files it names read at load. */
export interface Credentials {
  username?: string;
  /** mqtt_password, or the first line of mqtt_password_file. */
  password?: string;
  /** Used for mqtts:// only; fits both node:tls and MQTT.js options. rejectUnauthorized: mqtt_tls_verify. */
  tls: { rejectUnauthorized: boolean; minVersion: 'TLSv1.2'; ca?: Buffer; cert?: Buffer; key?: Buffer };
}

export interface RateLimit {
  /** Sustained messages per second per client (broker) and per origin (agent). */
  perSecond: number;
  /** Messages allowed at once above the sustained rate: a `-f` resync of a whole jail must fit. */
  burst: number;
}

/** `readFiles` false (the client): the TLS files are checked for being named in pairs, not read, and `tls` stays absent. */
export function readBrokerSecurity(general: SectionReader, users: SectionReader, readFiles: boolean): BrokerSecurity {
  const accounts = new Map<string, string>();
  for (const [name, hash] of users.entries()) {
    if (!NODE_ID.test(name)) users.fail(name, 'is not a valid account name', 'use the node_id of the host: letters, digits, "-", "_", "."');
    if (!hash.startsWith('$scrypt$')) {
      users.fail(name, 'is not a password hash', 'set it to the output of: syncfail2ban-broker --hash-password (password on stdin)');
    }
    accounts.set(name, hash);
  }
  const admins = new Set(general.list('mq_admins'));
  for (const admin of admins) {
    if (!accounts.has(admin)) general.fail('mq_admins', `${JSON.stringify(admin)} has no account in [users]`, 'add it to [users] (syncfail2ban-broker --hash-password) or remove it here');
  }
  const security: BrokerSecurity = { users: accounts, admins, limits: readBrokerLimits(general) };
  const [cert, key, clientCa] = [general.string('mq_tls_cert', ''), general.string('mq_tls_key', ''), general.string('mq_tls_client_ca', '')];
  if (Boolean(cert) !== Boolean(key)) {
    general.fail(cert ? 'mq_tls_key' : 'mq_tls_cert', 'TLS needs both a certificate and its key', 'set mq_tls_cert and mq_tls_key (PEM files), or neither');
  }
  if (clientCa && !cert) general.fail('mq_tls_client_ca', 'client certificates need TLS', 'set mq_tls_cert and mq_tls_key too');
  if (cert && readFiles) {
    const content = (name: string) => general.readNamedFile(name)!.content;
    security.tls = { cert: content('mq_tls_cert'), key: content('mq_tls_key'), ...(clientCa ? { clientCa: content('mq_tls_client_ca') } : {}) };
  }
  return security;
}

function readBrokerLimits(general: SectionReader): BrokerLimits {
  const defaults = DEFAULT_BROKER_LIMITS;
  return {
    subscriptionsPerClient: general.integer('mq_max_subscriptions', defaults.subscriptionsPerClient, 1, 1_000),
    connections: general.integer('mq_max_connections', defaults.connections, 1, 1_000_000),
    connectionsPerAddress: general.integer('mq_max_connections_per_address', defaults.connectionsPerAddress, 1, 100_000),
    connectionsPerAccount: general.integer('mq_max_connections_per_account', defaults.connectionsPerAccount, 1, 100_000),
    queueBytesPerClient: general.integer('mq_max_queued_kib', defaults.queueBytesPerClient / 1024, 64, 1024 * 1024) * 1024,
  };
}

/** `readTlsFiles` false (the client publishing over plain mqtt://): the CA, certificate and key are not read. */
export function readClientSecurity(general: SectionReader, nodeId: string, warnings: string[], readTlsFiles: boolean): Credentials {
  const credentials: Credentials = { tls: { rejectUnauthorized: general.boolean('mqtt_tls_verify', true), minVersion: 'TLSv1.2' } };
  const inline = general.string('mqtt_password', '');
  if (inline && general.string('mqtt_password_file', '')) general.fail('mqtt_password_file', 'both mqtt_password and mqtt_password_file are set', 'keep one of them');
  const file = general.readNamedFile('mqtt_password_file');
  const username = general.string('mqtt_username', '');
  if (inline) credentials.password = inline;
  if (file) {
    const password = file.content.toString('utf8').split('\n')[0]!.trim();
    if (!password) general.fail('mqtt_password_file', `${file.path} is empty`, 'write the password on its first line');
    credentials.password = password;
    if (modeOf(file.path) & 0o077) warnings.push(`${file.path} (mqtt_password_file) can be read by group or others; fix: chmod 600 ${file.path}`);
  }
  if (credentials.password !== undefined) credentials.username = username || nodeId;
  else if (username) credentials.username = username;
  if (Boolean(general.string('mqtt_cert_file', '')) !== Boolean(general.string('mqtt_key_file', ''))) {
    general.fail('mqtt_cert_file', 'a client certificate needs its key', 'set mqtt_cert_file and mqtt_key_file, or neither');
  }
  if (!readTlsFiles) return credentials;
  const ca = general.readNamedFile('mqtt_ca_file');
  const cert = general.readNamedFile('mqtt_cert_file');
  const key = general.readNamedFile('mqtt_key_file');
  if (ca) credentials.tls.ca = ca.content;
  if (cert && key) Object.assign(credentials.tls, { cert: cert.content, key: key.content });
  return credentials;
}

export function readRateLimit(general: SectionReader): RateLimit {
  return { perSecond: general.integer('rate_limit', 200, 1, 1_000_000), burst: general.integer('rate_burst', 20_000, 1, 10_000_000) };
}

/** The file's permission bits, or 0 when it cannot be seen. */
function modeOf(path: string): number {
  try {
    return statSync(path).mode;
  } catch {
    return 0;
  }
}
