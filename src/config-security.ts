import { statSync } from 'node:fs';
import type { SectionReader } from './config-reader.js';
import { NODE_ID } from './event.js';

/** What the embedded or standalone broker demands of the hosts that connect to it. */
export interface BrokerSecurity {
  /** account name -> scrypt hash (syncfail2ban-broker --hash-password); any entry turns authentication on. */
  users: Map<string, string>;
  /** Accounts whose bare-address events pass unstamped: manual bans and unbans for the whole fleet. */
  admins: Set<string>;
  /** Listen with TLS; with clientCaFile, require a client certificate whose CN is the host's identity. */
  tls?: { certFile: string; keyFile: string; clientCaFile?: string };
  /** DEFAULT_BROKER_LIMITS when absent. */
  limits?: BrokerLimits;
}

/** What one client may hold at the broker, so that memory stays bounded whatever clients send. */
export interface BrokerLimits {
  /** Subscriptions per connection; the fleet needs one (f2b/+/+). */
  subscriptionsPerClient: number;
  /** Open connections per source address (IPv6: per /64). */
  connectionsPerAddress: number;
  /** Open connections per authenticated account or certificate CN. */
  connectionsPerAccount: number;
  /** Bytes waiting to be sent to one client; what arrives beyond that for it is dropped and counted. */
  queueBytesPerClient: number;
}

export const DEFAULT_BROKER_LIMITS: BrokerLimits = {
  subscriptionsPerClient: 8,
  connectionsPerAddress: 64,
  connectionsPerAccount: 16,
  queueBytesPerClient: 1024 * 1024,
};

/** How agents and the CLI authenticate to brokers and verify them. */
export interface MqttClientSecurity {
  username?: string;
  password?: string;
  /** Read when connecting (clientCredentials), so a broker that never connects out never opens it. */
  passwordFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Verify the broker's certificate (mqtts). Off only when written explicitly. */
  verifyTls: boolean;
}

export interface RateLimit {
  /** Sustained messages per second per client (broker) and per origin (agent). */
  perSecond: number;
  /** Messages allowed at once above the sustained rate: a `-f` resync of a whole jail must fit. */
  burst: number;
}

export function readBrokerSecurity(general: SectionReader, users: SectionReader): BrokerSecurity {
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
  const certFile = general.string('mq_tls_cert', '');
  const keyFile = general.string('mq_tls_key', '');
  const clientCaFile = general.string('mq_tls_client_ca', '');
  if (Boolean(certFile) !== Boolean(keyFile)) {
    general.fail(certFile ? 'mq_tls_key' : 'mq_tls_cert', 'TLS needs both a certificate and its key', 'set mq_tls_cert and mq_tls_key (PEM files), or neither');
  }
  if (clientCaFile && !certFile) general.fail('mq_tls_client_ca', 'client certificates need TLS', 'set mq_tls_cert and mq_tls_key too');
  if (certFile) security.tls = clientCaFile ? { certFile, keyFile, clientCaFile } : { certFile, keyFile };
  return security;
}

function readBrokerLimits(general: SectionReader): BrokerLimits {
  const defaults = DEFAULT_BROKER_LIMITS;
  return {
    subscriptionsPerClient: general.integer('mq_max_subscriptions', defaults.subscriptionsPerClient, 1, 1_000),
    connectionsPerAddress: general.integer('mq_max_connections_per_address', defaults.connectionsPerAddress, 1, 100_000),
    connectionsPerAccount: general.integer('mq_max_connections_per_account', defaults.connectionsPerAccount, 1, 100_000),
    queueBytesPerClient: general.integer('mq_max_queued_kib', defaults.queueBytesPerClient / 1024, 64, 1024 * 1024) * 1024,
  };
}

export function readClientSecurity(general: SectionReader, nodeId: string, warnings: string[]): MqttClientSecurity {
  const security: MqttClientSecurity = { verifyTls: general.boolean('mqtt_tls_verify', true) };
  const inline = general.string('mqtt_password', '');
  const file = general.string('mqtt_password_file', '');
  if (inline && file) general.fail('mqtt_password_file', 'both mqtt_password and mqtt_password_file are set', 'keep one of them');
  const username = general.string('mqtt_username', '');
  if (inline) security.password = inline;
  if (file) {
    security.passwordFile = file;
    if (modeOf(file) & 0o077) warnings.push(`${file} (mqtt_password_file) can be read by group or others; fix: chmod 600 ${file}`);
  }
  if (inline || file) security.username = username || nodeId;
  else if (username) security.username = username;
  for (const [key, field] of [['mqtt_ca_file', 'caFile'], ['mqtt_cert_file', 'certFile'], ['mqtt_key_file', 'keyFile']] as const) {
    const value = general.string(key, '');
    if (value) security[field] = value;
  }
  if (Boolean(security.certFile) !== Boolean(security.keyFile)) {
    general.fail('mqtt_cert_file', 'a client certificate needs its key', 'set mqtt_cert_file and mqtt_key_file, or neither');
  }
  return security;
}

export function readRateLimit(general: SectionReader): RateLimit {
  return { perSecond: general.integer('rate_limit', 200, 1, 1_000_000), burst: general.integer('rate_burst', 20_000, 1, 10_000_000) };
}

/** The file's permission bits, or 0 when it cannot be seen (reading it later says why). */
function modeOf(path: string): number {
  try {
    return statSync(path).mode;
  } catch {
    return 0;
  }
}
