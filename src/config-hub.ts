import { ConfigError, type SectionReader } from './config-reader.js';

/** How a standalone broker instance joins the others of a clustered hub. */
export interface ClusterConfig {
  /** redis://… or rediss://…, password included when Redis asks for one. */
  redisUrl: string;
  /** PEM CA for a rediss:// server with a private CA (cluster_redis_ca_file). */
  redisCa?: Buffer;
  /**
   * cluster_key: the secret every instance signs what it puts on the bus with, and checks what
   * it takes off it against. Only syncfail2ban-broker needs it (clusterOf), so an agent or a
   * client reading the same file on a hub host starts without it.
   */
  key?: string;
}

const CLUSTER_KEY_FIX = 'set cluster_key to the same long random string on every instance of the hub, e.g. the output of: openssl rand -hex 32';

/** `broker_url`: one hub URL, or several instances of one clustered hub (separated by spaces). */
export function readBrokerUrls(general: SectionReader): string[] {
  const urls = general.list('broker_url');
  for (const text of urls) {
    const url = general.url('broker_url', text, ['mqtt:', 'mqtts:'], 'write mqtt://host:port or mqtts://host:port, several separated by spaces');
    if (url.username || url.password) general.fail('broker_url', 'credentials in the URL would be logged', 'remove them from the URL');
  }
  if (new Set(urls).size !== urls.length) general.fail('broker_url', 'lists the same URL twice', 'list each broker instance once');
  return urls;
}

/** `cluster_redis_url` (and its CA, read when `readFiles`): absent unless this standalone broker is one instance of a clustered hub. */
export function readCluster(general: SectionReader, readFiles: boolean): ClusterConfig | undefined {
  const text = general.string('cluster_redis_url', '');
  const caFile = general.string('cluster_redis_ca_file', '');
  const key = general.string('cluster_key', '');
  if (key && !/^[\x21-\x7e]{32,256}$/.test(key)) general.fail('cluster_key', 'is not 32 to 256 printable characters without spaces', CLUSTER_KEY_FIX);
  if (!text) {
    if (caFile) general.fail('cluster_redis_ca_file', 'is set but cluster_redis_url is not', 'set cluster_redis_url = rediss://host:6379, or remove it');
    if (key) general.fail('cluster_key', 'is set but cluster_redis_url is not', 'set cluster_redis_url too, or remove cluster_key');
    return undefined;
  }
  const fix = 'write redis://host:6379 or rediss://host:6380 (TLS), with ":password@" before the host when Redis requires one';
  const url = general.url('cluster_redis_url', text, ['redis:', 'rediss:'], fix, false);
  if (!url.hostname) general.fail('cluster_redis_url', 'names no host', fix);
  if (url.search || url.hash) general.fail('cluster_redis_url', 'has a query or fragment', fix);
  if (!/^(\/\d{0,2})?$/.test(url.pathname)) general.fail('cluster_redis_url', `${JSON.stringify(url.pathname)} is not a database number`, fix);
  if (caFile && url.protocol !== 'rediss:') general.fail('cluster_redis_ca_file', 'a CA needs TLS', 'use a rediss:// URL, or remove cluster_redis_ca_file');
  return {
    redisUrl: text,
    ...(caFile && readFiles ? { redisCa: general.readNamedFile('cluster_redis_ca_file')!.content } : {}),
    ...(key ? { key } : {}),
  };
}

/** A clustered hub instance's cluster, with its key: without one, whoever can publish into Redis could forge events. */
export function clusterOf(file: string, cluster: ClusterConfig): ClusterConfig & { key: string } {
  if (cluster.key === undefined) throw new ConfigError(`${file}: cluster_key: is required with cluster_redis_url (instances sign what they put into Redis with it); fix: ${CLUSTER_KEY_FIX}`);
  return { ...cluster, key: cluster.key };
}

/**
 * The hub instances in the order this host tries them: a rotation of broker_url that
 * starts at a place chosen by the node id, so a fleet sharing one config file spreads
 * over the instances, and each host comes back to the same one after a failover.
 */
export function hubOrder(urls: readonly string[], nodeId: string): string[] {
  if (urls.length < 2) return [...urls];
  let hash = 0x811c9dc5; // FNV-1a: stable across releases and platforms
  for (const byte of Buffer.from(nodeId)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  const start = hash % urls.length;
  return [...urls.slice(start), ...urls.slice(0, start)];
}
