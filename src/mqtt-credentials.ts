import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { MqttClientSecurity } from './config-security.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** Used for mqtts:// only. */
  tls: ConnectionOptions;
}

/** Reads the CA and client certificate files named in the config; a clear error if one cannot be read. */
export function clientCredentials(security: MqttClientSecurity): Credentials {
  const tls: ConnectionOptions = { rejectUnauthorized: security.verifyTls, minVersion: 'TLSv1.2' };
  if (security.caFile) tls.ca = readPem('mqtt_ca_file', security.caFile);
  if (security.certFile) tls.cert = readPem('mqtt_cert_file', security.certFile);
  if (security.keyFile) tls.key = readPem('mqtt_key_file', security.keyFile);
  const credentials: Credentials = { tls };
  if (security.username !== undefined) credentials.username = security.username;
  if (security.password !== undefined) credentials.password = security.password;
  return credentials;
}

function readPem(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new Error(`${key} ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); fix the path or its permissions`);
  }
}
