import { ConfigError, readConfiguredFile } from './config-reader.js';
import type { MqttClientSecurity } from './config-security.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** Used for mqtts:// only; fits both node:tls and MQTT.js options. */
  tls: { rejectUnauthorized: boolean; minVersion: 'TLSv1.2'; ca?: Buffer; cert?: Buffer; key?: Buffer };
}

/** Reads the password file, CA and client certificate named in the config; a ConfigError if one cannot be read. */
export function clientCredentials(security: MqttClientSecurity): Credentials {
  const tls: Credentials['tls'] = { rejectUnauthorized: security.verifyTls, minVersion: 'TLSv1.2' };
  if (security.caFile) tls.ca = readConfiguredFile('mqtt_ca_file', security.caFile);
  if (security.certFile) tls.cert = readConfiguredFile('mqtt_cert_file', security.certFile);
  if (security.keyFile) tls.key = readConfiguredFile('mqtt_key_file', security.keyFile);
  const credentials: Credentials = { tls };
  if (security.username !== undefined) credentials.username = security.username;
  if (security.password !== undefined) credentials.password = security.password;
  if (security.passwordFile !== undefined) credentials.password = readPasswordFile(security.passwordFile);
  return credentials;
}

/** The first line of mqtt_password_file. */
function readPasswordFile(path: string): string {
  const password = readConfiguredFile('mqtt_password_file', path).toString('utf8').split('\n')[0]!.trim();
  if (!password) throw new ConfigError(`mqtt_password_file = ${path}: the file is empty; fix: write the password on its first line`);
  return password;
}
