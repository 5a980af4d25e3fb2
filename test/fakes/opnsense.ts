/**
 * A fake OPNsense API server for tests. It reproduces the alias API behaviour measured on
 * real firewalls, including the awkward parts (failures answered as
 * HTTP 200, the /32 suffix on network aliases, delete matching pf's rendering only, flush
 * that config undoes on the next reload, privileges matched on the raw URI, whole-content
 * validation of host/network aliases, reconfigure failing on any broken alias, the cost and
 * memory limit of a listing, configd time-outs answered as an empty list, the table-entries
 * limit behind a "done", alias types that keep nothing, the first-entry duplicate, one config
 * lock for every write, IPv6 stripped from kill_states), and offers switches for fault tests.
 *
 * Config (config.xml alias content) and the live pf tables are modelled separately:
 * alias_util writes both on host/network aliases, only pf on external ones; reconfigure and
 * reboot copy config into pf.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Privileges as OPNsense's ACL.xml defines them, each a list of URI patterns (see PRIVILEGE_PATTERNS). */
export type FakePrivilege =
  | 'alias_util' // "Diagnostics: PF Table IP addresses"
  | 'alias' // "Firewall: Alias: Edit"
  | 'aliases' // "Firewall: Aliases": reading alias config only (get*, search*, list*, export)
  | 'diagnostics' // "Diagnostics: Show States"
  | 'all' // "All pages"
  | 'readonly'; // the key's user may read but not change anything

/**
 * ACL patterns, matched like OPNsense's ACL::urlMatch against the raw request URI: case-
 * and underscore-sensitive, '*' any text, a trailing '/*' also matching the bare path.
 */
const PRIVILEGE_PATTERNS: Record<Exclude<FakePrivilege, 'readonly'>, string[]> = {
  alias_util: ['api/firewall/alias_util/*'],
  alias: ['api/firewall/alias/*'],
  aliases: ['api/firewall/alias/export', 'api/firewall/alias/search*', 'api/firewall/alias/list*', 'api/firewall/alias/get*'],
  diagnostics: [
    'api/diagnostics/firewall/query_states*',
    'api/diagnostics/firewall/del_state*',
    'api/diagnostics/firewall/kill_states*',
    'api/diagnostics/firewall/flush_sources*',
    'api/diagnostics/firewall/flush_states*',
  ],
  all: ['*'],
};

function urlMatch(uri: string, pattern: string): boolean {
  let regex = pattern.replace(/[.?]/g, (c) => `\\${c}`).replace(/\*/g, '.*');
  regex = regex.replace(/([/&?])\.\*$/, '($1.*)?');
  return new RegExp(`^/${regex}$`).test(uri);
}

function allowed(key: FakeApiKey, uri: string): boolean {
  return key.privileges.some((privilege) => privilege !== 'readonly' && PRIVILEGE_PATTERNS[privilege].some((pattern) => urlMatch(uri, pattern)));
}

export interface FakeApiKey {
  key: string;
  secret: string;
  privileges: FakePrivilege[];
}

/** Every alias type OPNsense offers; only host, network and external keep what alias_util adds. */
export type FakeAliasType =
  | 'host'
  | 'network'
  | 'external'
  | 'port'
  | 'url'
  | 'urltable'
  | 'urljson'
  | 'geoip'
  | 'networkgroup'
  | 'mac'
  | 'asn'
  | 'dynipv6host'
  | 'authgroup'
  | 'internal';

const TYPE_LABELS: Record<FakeAliasType, string> = {
  host: 'Host(s)',
  network: 'Network(s)',
  port: 'Port(s)',
  url: 'URL (IPs)',
  urltable: 'URL Table (IPs)',
  urljson: 'URL Table in JSON format (IPs)',
  geoip: 'GeoIP',
  networkgroup: 'Network group',
  mac: 'MAC address',
  asn: 'BGP ASN',
  dynipv6host: 'Dynamic IPv6 Host',
  authgroup: 'OpenVPN group',
  internal: 'Internal (automatic)',
  external: 'External (advanced)',
};

/** Types whose pf table is rebuilt from their source (a URL, GeoIP data, other aliases) at every refresh. */
const GENERATED_TYPES = new Set<FakeAliasType>(['url', 'urltable', 'urljson', 'geoip', 'networkgroup', 'asn', 'dynipv6host', 'authgroup', 'internal']);

export interface FakeAliasSpec {
  name: string;
  type: FakeAliasType;
  /** Content in config.xml (host/network only; stored as given). */
  content?: string[];
  /** Initial pf table entries; defaults to the rendering of `content`. */
  table?: string[];
  /** Default true; a disabled alias is used by no rule and has no pf table. */
  enabled?: boolean;
  /** External aliases since 25.7: pf entries age out after this many seconds. */
  expire?: number;
}

export interface FakeOpnsenseOptions {
  keys?: FakeApiKey[];
  aliases?: FakeAliasSpec[];
  /** HTTPS with a freshly generated self-signed certificate (default true). */
  tls?: boolean;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /**
   * pf's table-entries limit, shared by all tables (default 1,000,000): past it, alias_util
   * add answers done and pf keeps nothing. get_table_size reports it.
   */
  tableEntriesLimit?: number;
  /** A list of a table larger than this runs PHP out of memory: HTTP 500 (default 2,200,000). */
  listMemoryLimitEntries?: number;
  /**
   * Serve the API under this path, as a reverse proxy publishing the GUI at
   * https://proxy/<prefix>/ does (e.g. '/fw1'); anything else is 404. `url` then includes it.
   */
  pathPrefix?: string;
}

export interface FakeRequestRecord {
  method: string;
  /** Path and query as received. */
  path: string;
  /** Canonical endpoint key (see FakeRequestCounters.byEndpoint) or 'unknown'. */
  endpoint: string;
  contentType: string | undefined;
  body: string;
  /** HTTP status answered (0 while in flight or when the socket died first). */
  status: number;
}

export interface FakeRequestCounters {
  total: number;
  /**
   * Requests per endpoint, keyed by canonical name whatever spelling was used, e.g.
   * 'firewall/alias_util/add', 'firewall/alias/get_alias_uuid',
   * 'diagnostics/firewall/kill_states'; anything else counts as 'unknown'.
   */
  byEndpoint: Record<string, number>;
  inFlight: number;
  maxInFlight: number;
  /** The most requests of each endpoint (keys as in byEndpoint) in flight at once. */
  maxInFlightByEndpoint: Record<string, number>;
  /** TCP connections accepted. */
  connections: number;
  log: FakeRequestRecord[];
}

export interface FakeOpnsense {
  /** e.g. https://127.0.0.1:40123 */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The self-signed certificate to pin as CA; undefined when tls is false. */
  readonly caCertPath: string | undefined;
  readonly requests: FakeRequestCounters;

  /** Live pf table entries in pf's rendering ([] for an unknown table). */
  pfTable(alias: string): string[];
  /** Alias content as stored in config.xml ([] for external or unknown aliases). */
  configContent(alias: string): string[];
  /** Replaces a pf table's entries directly (e.g. to load 12,000 entries quickly). */
  setPfTable(alias: string, entries: string[]): void;
  /**
   * Stores an entry in a host/network alias's config that its validation refuses, as an
   * upgrade that tightened validation leaves it: from then on every alias_util write to that
   * alias is a 500, and every reconfigure is a 500.
   */
  storeInvalidEntry(alias: string, entry: string): void;
  /** Moves the clock of expiring external aliases forward: older entries leave pf. */
  elapse(seconds: number): void;
  /** Creates (or replaces) an alias as if made in the GUI and applied. */
  defineAlias(spec: FakeAliasSpec): void;
  removeAlias(name: string): void;
  uuidOf(alias: string): string | undefined;

  /** Registers `count` more fake pf states involving `ip`. */
  addStates(ip: string, count: number): void;
  states(ip: string): number;

  /** External tables emptied, host/network tables reloaded from config, states dropped. */
  reboot(): void;
  /** 'refuse': stop listening (ECONNREFUSED); 'reset': accept then destroy each socket. */
  setDown(down: boolean, how?: 'refuse' | 'reset'): Promise<void>;
  /** Delay before each request is handled (counted as in flight meanwhile). */
  setLatency(ms: number): void;
  /**
   * Host/network alias_util writes and set_item hold the global config lock this long (every
   * alias_util add/delete takes it: writes run one at a time).
   */
  setConfigSaveMs(ms: number): void;
  /** [start, end] of each write's turn under the config lock, in order (ms since start). */
  readonly lockTurns: Array<[number, number]>;
  /** reconfigure takes this long; a concurrent reconfigure answers ok without refreshing. */
  setReconfigureMs(ms: number): void;
  /** Simulates a firewall that ignores rowCount=-1 and serves at most `rows` per list page. */
  capListPage(rows: number | null): void;
  /** Each list takes this long per 10,000 entries of the table, whatever page is asked for. */
  setListCost(msPer10k: number): void;
  /** The next n lists find configd timed out: HTTP 200 with total 0 and no rows. */
  configdTimeouts(n: number): void;
  /** The next n requests are answered with `status` before authentication. */
  failNext(n: number, status?: number): void;
  /** Every request is answered with `status` until setFailing(null). */
  setFailing(status: number | null): void;
  /**
   * Every set_item answers {"result":"failed","validations":{"alias.content": message}}
   * until refuseSetItem(null), like a firewall whose stored alias content no longer passes
   * its own validation (e.g. after an upgrade tightened it).
   */
  refuseSetItem(message: string | null): void;
  resetCounters(): void;
  close(): Promise<void>;
}

export const FAKE_API_KEY: FakeApiKey = {
  key: 'fake-api-key',
  secret: 'fake-api-secret',
  privileges: ['alias_util', 'alias', 'diagnostics'],
};

const BODY_AUTH_FAILED = { status: 401, message: 'Authentication Failed' };
const BODY_FORBIDDEN = { status: 403, message: 'Forbidden' };
const BODY_INVALID_JSON = { status: 400, message: 'Invalid JSON syntax' };
const BODY_NOT_FOUND = { errorMessage: 'Endpoint not found' };
const BODY_UNEXPECTED = { errorMessage: 'Unexpected error, check log for details' };
const BODY_READ_ONLY = {
  errorMessage: 'User has read-only access, changes are not allowed',
  errorTitle: 'General access',
};

/** pf tables that exist on every firewall without being aliases. */
const SYSTEM_TABLES = ['bogons', 'bogonsv6', 'sshlockout', 'virusprot'];
const DEFAULT_LIST_ROWS = 9_999;
const MAX_BODY_BYTES = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Addresses as pf sees them

interface ParsedAddress {
  family: 4 | 6;
  bytes: number[];
  prefix: number | null;
}

function parseAddress(text: string): ParsedAddress | null {
  const slash = text.indexOf('/');
  const host = slash === -1 ? text : text.slice(0, slash);
  let prefix: number | null = null;
  if (slash !== -1) {
    const mask = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(mask)) return null;
    prefix = Number(mask);
  }
  const family = isIP(host);
  if (family === 4) {
    if (prefix !== null && prefix > 32) return null;
    return { family: 4, bytes: host.split('.').map(Number), prefix };
  }
  if (family === 6 && !host.includes('%')) {
    if (prefix !== null && prefix > 128) return null;
    return { family: 6, bytes: ipv6Bytes(host), prefix };
  }
  return null;
}

function ipv6Bytes(host: string): number[] {
  let text = host;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? [] : new Array<string>(8 - headGroups.length - restGroups.length).fill('0');
  const groups = [...headGroups, ...zeros, ...restGroups].map((g) => parseInt(g, 16));
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

function masked(address: ParsedAddress): number[] {
  if (address.prefix === null) return address.bytes;
  let bits = address.prefix;
  return address.bytes.map((byte) => {
    const keep = Math.max(0, Math.min(8, bits));
    bits -= 8;
    return byte & ((0xff << (8 - keep)) & 0xff);
  });
}

function formatIpv6(bytes: number[]): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j += 1;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLength < 2) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLength).join(':');
  return `${left}::${right}`;
}

/** How `pfctl -T show` prints an entry: network bits only, no mask on single hosts. */
function renderForPf(address: ParsedAddress): string {
  const bytes = masked(address);
  const host = address.family === 4 ? bytes.join('.') : formatIpv6(bytes);
  const full = address.family === 4 ? 32 : 128;
  return address.prefix === null || address.prefix === full ? host : `${host}/${address.prefix}`;
}

function contains(entry: ParsedAddress, ip: ParsedAddress): boolean {
  if (entry.family !== ip.family) return false;
  const net = masked(entry);
  const candidate = masked({ ...ip, prefix: entry.prefix });
  return net.every((byte, i) => byte === candidate[i]);
}

/** Whether config validation accepts `entry` for a host/network alias. */
function validForAlias(type: 'host' | 'network', entry: string): boolean {
  const parsed = parseAddress(entry);
  if (parsed === null) return false;
  return type === 'network' || parsed.prefix === null;
}

function validationMessage(type: 'host' | 'network', entry: string): string {
  return type === 'host'
    ? `Entry "${entry}" is not a valid hostname, IP address or range.`
    : `Entry "${entry}" is not a valid network.`;
}

// ---------------------------------------------------------------------------------------
// Routing

type EndpointName =
  | 'add'
  | 'delete'
  | 'flush'
  | 'list'
  | 'aliases'
  | 'find_references'
  | 'get_alias_uuid'
  | 'get_item'
  | 'set_item'
  | 'reconfigure'
  | 'get_table_size'
  | 'kill_states';

interface EndpointDef {
  name: EndpointName;
  key: string;
  param: 'required' | 'optional' | 'none';
  /** Refused to a read-only user. */
  writes: boolean;
}

function endpoint(group: string, name: EndpointName, param: EndpointDef['param'], writes = false): [string, EndpointDef] {
  // Action names are routed like PHP method names: case-insensitive, '_' ignored (the ACL is not).
  return [name.replace(/_/g, ''), { name, key: `${group}/${name}`, param, writes }];
}

const ENDPOINTS: Record<string, Map<string, EndpointDef>> = {
  'firewall/alias_util': new Map([
    endpoint('firewall/alias_util', 'add', 'required', true),
    endpoint('firewall/alias_util', 'delete', 'required', true),
    endpoint('firewall/alias_util', 'flush', 'required', true),
    endpoint('firewall/alias_util', 'list', 'required'),
    endpoint('firewall/alias_util', 'aliases', 'none'),
    endpoint('firewall/alias_util', 'find_references', 'none'),
  ]),
  'firewall/alias': new Map([
    endpoint('firewall/alias', 'get_alias_uuid', 'required'),
    endpoint('firewall/alias', 'get_item', 'optional'),
    endpoint('firewall/alias', 'set_item', 'required', true),
    endpoint('firewall/alias', 'reconfigure', 'none'),
    endpoint('firewall/alias', 'get_table_size', 'none'),
  ]),
  'diagnostics/firewall': new Map([endpoint('diagnostics/firewall', 'kill_states', 'none')]),
};

interface Route {
  def: EndpointDef;
  params: string[];
}

function route(pathname: string): Route | null {
  const parts = pathname.split('/').slice(1);
  if (parts[0] !== 'api' || parts.length < 4) return null;
  const action = (parts[3] ?? '').replace(/_/g, '').toLowerCase();
  const def = ENDPOINTS[`${parts[1]}/${parts[2]}`]?.get(action);
  if (def === undefined) return null;
  try {
    return { def, params: parts.slice(4).map((p) => decodeURIComponent(p)) };
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------
// Server

interface Reply {
  status: number;
  json?: unknown;
  html?: string;
}

interface Context {
  method: string;
  /** Fields of a POST body (JSON or form); empty for other methods. */
  post: Record<string, unknown>;
  query: URLSearchParams;
  params: string[];
}

interface AliasState {
  uuid: string;
  name: string;
  type: FakeAliasType;
  config: string[];
  description: string;
  enabled: boolean;
  expire: number | null;
}

const ok = (json: unknown): Reply => ({ status: 200, json });

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function stringField(fields: Record<string, unknown>, name: string): string | undefined {
  const value = fields[name];
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

function intField(fields: Record<string, unknown>, name: string, fallback: number): number {
  const text = stringField(fields, name);
  if (text === undefined || text.trim() === '') return fallback;
  const value = parseInt(text, 10);
  return Number.isNaN(value) ? 0 : value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function failureReply(status: number): Reply {
  switch (status) {
    case 400:
      return { status, json: BODY_INVALID_JSON };
    case 401:
      return { status, json: BODY_AUTH_FAILED };
    case 403:
      return { status, json: BODY_FORBIDDEN };
    case 404:
      return { status, json: BODY_NOT_FOUND };
    case 500:
      return { status, json: BODY_UNEXPECTED };
    default: {
      // What a proxy or the web server itself answers: not JSON.
      const text = `${status} ${http.STATUS_CODES[status] ?? 'Error'}`;
      return { status, html: `<html><head><title>${text}</title></head><body><h1>${text}</h1></body></html>` };
    }
  }
}

async function makeCertificate(dir: string, host: string): Promise<{ certPath: string; keyPath: string }> {
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const names = new Set(['IP:127.0.0.1', 'DNS:localhost', isIP(host) ? `IP:${host}` : `DNS:${host}`]);
  await execFileAsync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=fake-opnsense',
    '-addext',
    `subjectAltName=${[...names].join(',')}`,
    '-keyout',
    keyPath,
    '-out',
    certPath,
  ]);
  return { certPath, keyPath };
}

class FakeOpnsenseServer implements FakeOpnsense {
  readonly requests: FakeRequestCounters = {
    total: 0,
    byEndpoint: {},
    inFlight: 0,
    maxInFlight: 0,
    maxInFlightByEndpoint: {},
    connections: 0,
    log: [],
  };
  url = '';
  port = 0;
  private readonly pathPrefix: string;

  private readonly keys: FakeApiKey[];
  private readonly aliasStates = new Map<string, AliasState>();
  private readonly tables = new Map<string, Set<string>>();
  private readonly stateCounts = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  private server: http.Server | https.Server | undefined;
  private downMode: 'refuse' | 'reset' | null = null;
  private latencyMs = 0;
  private configSaveMs = 0;
  private reconfigureMs = 0;
  private reconfiguring = false;
  private configLock: Promise<void> = Promise.resolve();
  private listPageCap: number | null = null;
  private failCount = 0;
  private failStatus = 500;
  private failingStatus: number | null = null;
  private setItemRefusal: string | null = null;
  private listCostMsPer10k = 0;
  private readonly inFlightByEndpoint = new Map<string, number>();
  private configdTimeoutCount = 0;
  private readonly listMemoryLimit: number;
  /** Expiring aliases: entry -> the fake clock (s) when it was added. */
  private readonly entryTimes = new Map<string, Map<string, number>>();
  private clockS = 0;
  private readonly startedAt = Date.now();
  readonly lockTurns: Array<[number, number]> = [];

  constructor(
    readonly host: string,
    readonly caCertPath: string | undefined,
    private readonly tempDir: string | undefined,
    private readonly tls: boolean,
    private readonly tableEntriesLimit: number,
    options: FakeOpnsenseOptions,
  ) {
    this.keys = options.keys ?? [FAKE_API_KEY];
    this.pathPrefix = (options.pathPrefix ?? '').replace(/\/+$/, '');
    this.listMemoryLimit = options.listMemoryLimitEntries ?? 2_200_000;
    for (const table of SYSTEM_TABLES) this.tables.set(table, new Set());
    for (const spec of options.aliases ?? []) this.defineAlias(spec);
  }

  async start(keyPath: string | undefined): Promise<void> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      this.handle(req, res).catch(() => res.destroy());
    };
    if (this.tls) {
      if (keyPath === undefined || this.caCertPath === undefined) throw new Error('fake OPNsense: TLS without certificate');
      const [key, cert] = await Promise.all([readFile(keyPath), readFile(this.caCertPath)]);
      this.server = https.createServer({ key, cert }, handler);
    } else {
      this.server = http.createServer(handler);
    }
    this.server.on('connection', (socket: Socket) => {
      this.requests.connections += 1;
      if (this.downMode === 'reset') {
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await this.listen(0);
    const scheme = this.tls ? 'https' : 'http';
    const shownHost = isIP(this.host) === 6 ? `[${this.host}]` : this.host;
    this.url = `${scheme}://${shownHost}:${this.port}${this.pathPrefix}`;
  }

  private listen(port: number): Promise<void> {
    const server = this.server;
    if (server === undefined) return Promise.reject(new Error('fake OPNsense: not started'));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.host, () => {
        server.off('error', reject);
        this.port = (server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  // --- inspection and set-up ---------------------------------------------------------

  pfTable(alias: string): string[] {
    return [...(this.tables.get(alias) ?? [])];
  }

  configContent(alias: string): string[] {
    return [...(this.aliasStates.get(alias)?.config ?? [])];
  }

  setPfTable(alias: string, entries: string[]): void {
    const table = new Set<string>();
    for (const entry of entries) {
      const parsed = parseAddress(entry);
      if (parsed === null) throw new Error(`fake OPNsense: "${entry}" is not an address pf would hold`);
      table.add(renderForPf(parsed));
    }
    this.tables.set(alias, table);
  }

  defineAlias(spec: FakeAliasSpec): void {
    const inConfig = spec.type === 'host' || spec.type === 'network';
    const config = inConfig ? [...(spec.content ?? [])] : [];
    if (inConfig) {
      const bad = config.find((entry) => !validForAlias(spec.type as 'host' | 'network', entry));
      if (bad !== undefined) throw new Error(`fake OPNsense: alias ${spec.name}: ${validationMessage(spec.type as 'host' | 'network', bad)}`);
    }
    const previous = this.aliasStates.get(spec.name);
    this.aliasStates.set(spec.name, {
      uuid: previous?.uuid ?? randomUUID(),
      name: spec.name,
      type: spec.type,
      config,
      description: '',
      enabled: spec.enabled ?? true,
      expire: spec.type === 'external' && spec.expire !== undefined ? spec.expire : null,
    });
    this.entryTimes.delete(spec.name);
    if (spec.enabled === false) this.tables.delete(spec.name);
    else this.setPfTable(spec.name, spec.table ?? config);
  }

  storeInvalidEntry(alias: string, entry: string): void {
    const state = this.aliasStates.get(alias);
    if (state === undefined || (state.type !== 'host' && state.type !== 'network')) throw new Error(`fake OPNsense: ${alias} is no host/network alias`);
    state.config.push(entry);
  }

  elapse(seconds: number): void {
    this.clockS += seconds;
    for (const alias of this.aliasStates.values()) {
      const times = this.entryTimes.get(alias.name);
      if (alias.expire === null || times === undefined) continue;
      for (const [entry, at] of times) {
        if (this.clockS - at < alias.expire) continue;
        times.delete(entry);
        this.tables.get(alias.name)?.delete(entry);
      }
    }
  }

  removeAlias(name: string): void {
    this.aliasStates.delete(name);
    this.tables.delete(name);
  }

  uuidOf(alias: string): string | undefined {
    return this.aliasStates.get(alias)?.uuid;
  }

  addStates(ip: string, count: number): void {
    this.stateCounts.set(ip, (this.stateCounts.get(ip) ?? 0) + count);
  }

  states(ip: string): number {
    return this.stateCounts.get(ip) ?? 0;
  }

  // --- switches ----------------------------------------------------------------------

  reboot(): void {
    for (const alias of this.aliasStates.values()) {
      if (alias.type === 'external' && alias.enabled) this.tables.set(alias.name, new Set());
      else this.reload(alias);
    }
    this.entryTimes.clear();
    for (const table of SYSTEM_TABLES) this.tables.set(table, new Set());
    this.stateCounts.clear();
  }

  async setDown(down: boolean, how: 'refuse' | 'reset' = 'refuse'): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    if (!down) {
      this.downMode = null;
      if (!server.listening) await this.listen(this.port);
      return;
    }
    this.downMode = how;
    for (const socket of this.sockets) socket.destroy();
    if (how === 'refuse' && server.listening) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    if (how === 'reset' && !server.listening) await this.listen(this.port);
  }

  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  setConfigSaveMs(ms: number): void {
    this.configSaveMs = ms;
  }

  setReconfigureMs(ms: number): void {
    this.reconfigureMs = ms;
  }

  capListPage(rows: number | null): void {
    this.listPageCap = rows;
  }

  setListCost(msPer10k: number): void {
    this.listCostMsPer10k = msPer10k;
  }

  configdTimeouts(n: number): void {
    this.configdTimeoutCount = n;
  }

  failNext(n: number, status = 500): void {
    this.failCount = n;
    this.failStatus = status;
  }

  setFailing(status: number | null): void {
    this.failingStatus = status;
  }

  refuseSetItem(message: string | null): void {
    this.setItemRefusal = message;
  }

  resetCounters(): void {
    this.requests.total = 0;
    this.requests.byEndpoint = {};
    this.requests.maxInFlight = this.requests.inFlight;
    this.requests.maxInFlightByEndpoint = {};
    this.requests.connections = 0;
    this.requests.log = [];
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.tempDir !== undefined) await rm(this.tempDir, { recursive: true, force: true });
  }

  // --- request pipeline --------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const counters = this.requests;
    counters.total += 1;
    counters.inFlight += 1;
    counters.maxInFlight = Math.max(counters.maxInFlight, counters.inFlight);
    // A request stops being in flight when its answer is handed over (before the client can
    // send another on the same socket), or when its socket dies first.
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const prefix = this.pathPrefix;
    const underPrefix = prefix === '' || url.pathname.startsWith(`${prefix}/`);
    const found = underPrefix ? route(url.pathname.slice(prefix.length)) : null;
    const key = found?.def.key ?? 'unknown';
    counters.byEndpoint[key] = (counters.byEndpoint[key] ?? 0) + 1;
    this.inFlightByEndpoint.set(key, (this.inFlightByEndpoint.get(key) ?? 0) + 1);
    counters.maxInFlightByEndpoint[key] = Math.max(counters.maxInFlightByEndpoint[key] ?? 0, this.inFlightByEndpoint.get(key) ?? 0);
    let done = false;
    const settle = (): void => {
      if (done) return;
      done = true;
      counters.inFlight -= 1;
      this.inFlightByEndpoint.set(key, (this.inFlightByEndpoint.get(key) ?? 1) - 1);
    };
    res.on('close', settle);

    const contentType = req.headers['content-type'];
    const body = await readBody(req);
    const record: FakeRequestRecord = { method: req.method ?? '', path: req.url ?? '', endpoint: key, contentType, body, status: 0 };
    counters.log.push(record);

    if (this.latencyMs > 0) await delay(this.latencyMs);
    const reply = await this.answer(req, url, found, contentType, body, (req.url ?? '/').slice(prefix.length));
    record.status = reply.status;
    settle();
    if (res.destroyed) return;
    if (reply.html !== undefined) {
      res.writeHead(reply.status, { 'Content-Type': 'text/html' });
      res.end(reply.html);
    } else {
      res.writeHead(reply.status, { 'Content-Type': 'application/json; charset=UTF-8' });
      res.end(JSON.stringify(reply.json));
    }
  }

  private async answer(
    req: http.IncomingMessage,
    url: URL,
    found: Route | null,
    contentType: string | undefined,
    body: string,
    uri: string,
  ): Promise<Reply> {
    if (this.failingStatus !== null) return failureReply(this.failingStatus);
    if (this.failCount > 0) {
      this.failCount -= 1;
      return failureReply(this.failStatus);
    }

    const apiKey = this.authenticate(req.headers.authorization);
    if (apiKey === null) return { status: 401, json: BODY_AUTH_FAILED };
    if (found === null) return { status: 404, json: BODY_NOT_FOUND };
    const { def, params } = found;
    if (!allowed(apiKey, uri)) return { status: 403, json: BODY_FORBIDDEN };
    if (def.param === 'required' && (params[0] === undefined || params[0] === '')) {
      return { status: 404, json: BODY_NOT_FOUND };
    }

    let fields: Record<string, unknown> = {};
    const type = (contentType ?? '').toLowerCase();
    if (type.includes('application/json')) {
      if (body.trim() === '') return { status: 400, json: BODY_INVALID_JSON };
      try {
        const parsed: unknown = JSON.parse(body);
        if (isRecord(parsed)) fields = parsed;
      } catch {
        return { status: 400, json: BODY_INVALID_JSON };
      }
    } else if (type.includes('application/x-www-form-urlencoded')) {
      fields = Object.fromEntries(new URLSearchParams(body));
    }
    if (def.writes && apiKey.privileges.includes('readonly')) return { status: 500, json: BODY_READ_ONLY };

    const method = req.method ?? 'GET';
    const context: Context = { method, post: method === 'POST' ? fields : {}, query: url.searchParams, params };
    return this.dispatch(def.name, context);
  }

  private authenticate(header: string | undefined): FakeApiKey | null {
    const match = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? '');
    if (match === null) return null;
    const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon === -1) return null;
    const key = decoded.slice(0, colon);
    const secret = decoded.slice(colon + 1);
    return this.keys.find((k) => k.key === key && k.secret === secret) ?? null;
  }

  private dispatch(name: EndpointName, ctx: Context): Reply | Promise<Reply> {
    switch (name) {
      case 'add':
        return this.add(ctx);
      case 'delete':
        return this.delete(ctx);
      case 'flush':
        return this.flush(ctx);
      case 'list':
        return this.list(ctx);
      case 'aliases':
        return ok([...this.tables.keys()]);
      case 'find_references':
        return this.findReferences(ctx);
      case 'get_alias_uuid': {
        const alias = this.aliasStates.get(ctx.params[0] ?? '');
        return ok(alias === undefined ? [] : { uuid: alias.uuid });
      }
      case 'get_item':
        return this.getItem(ctx);
      case 'set_item':
        return this.setItem(ctx);
      case 'reconfigure':
        return this.reconfigure(ctx);
      case 'get_table_size': {
        // pftablecount.py: the limit, the sum, and a count per table.
        const details = Object.fromEntries([...this.tables].map(([name, table]) => [name, { count: table.size, updated: null }]));
        return ok({ status: 'ok', size: this.tableEntriesLimit, used: this.tableEntriesUsed(), details });
      }
      case 'kill_states':
        return this.killStates(ctx);
    }
  }

  // --- alias_util --------------------------------------------------------------------

  private async add(ctx: Context): Promise<Reply> {
    let address = stringField(ctx.post, 'address');
    if (ctx.method !== 'POST' || address === undefined) return ok({ status: 'failed' });
    if (/[^0-9a-f:./_]/.test(address)) return ok({ status: 'not_an_address' });
    const name = ctx.params[0] ?? '';
    const alias = this.aliasStates.get(name);
    if (alias === undefined) return ok({ status: 'failed', status_msg: `nonexistent alias ${name}` });
    if (alias.type === 'network' && !address.includes('/')) address += address.includes(':') ? '/128' : '/32';
    const entry = address;
    const inConfig = alias.type === 'host' || alias.type === 'network';
    // BaseModel validates the alias's whole content, not only the new entry.
    if (inConfig && [...alias.config, entry].some((item) => !validForAlias(alias.type as 'host' | 'network', item))) {
      return { status: 500, json: BODY_UNEXPECTED };
    }
    await this.withConfigLock(inConfig, () => {
      // !array_search(): an address equal to the FIRST entry (index 0) is added again.
      if (inConfig && alias.config.indexOf(entry) <= 0) alias.config.push(entry);
      this.pfAdd(alias, entry);
    });
    return ok({ status: 'done' });
  }

  /** pfctl -T add, whose result OPNsense ignores: unparsable entries and entries past table-entries are dropped silently. */
  private pfAdd(alias: AliasState, entry: string): void {
    const parsed = parseAddress(entry);
    // Port and MAC aliases are no address tables; a disabled alias has no table in the ruleset.
    if (parsed === null || alias.type === 'port' || alias.type === 'mac' || !alias.enabled) return;
    const table = this.table(alias.name);
    const rendered = renderForPf(parsed);
    if (table.has(rendered) || this.tableEntriesUsed() >= this.tableEntriesLimit) return;
    table.add(rendered);
    if (alias.expire !== null) this.addedAt(alias.name).set(rendered, this.clockS);
  }

  private async delete(ctx: Context): Promise<Reply> {
    const address = stringField(ctx.post, 'address');
    if (ctx.method !== 'POST' || address === undefined) return ok({ status: 'failed' });
    if (/[^0-9a-f:./_]/.test(address)) return ok({ status: 'not_an_address' });
    const name = ctx.params[0] ?? '';
    const alias = this.aliasStates.get(name);
    const inConfig = alias !== undefined && (alias.type === 'host' || alias.type === 'network');
    const entry = alias?.type === 'network' && !address.includes('/') ? `${address}${address.includes(':') ? '/128' : '/32'}` : address;
    if (inConfig) {
      const rest = [...alias.config];
      const index = rest.indexOf(entry);
      if (index !== -1) rest.splice(index, 1);
      if (rest.some((item) => !validForAlias(alias.type as 'host' | 'network', item))) return { status: 500, json: BODY_UNEXPECTED };
    }
    await this.withConfigLock(inConfig, () => {
      if (inConfig) {
        // One copy only: a duplicated first entry stays in config.
        const index = alias.config.indexOf(entry);
        if (index !== -1) alias.config.splice(index, 1);
      }
      // Only an exact match of pf's rendering is removed ("1.2.3.4/32" does not match "1.2.3.4").
      this.tables.get(name)?.delete(address);
    });
    return ok({ status: 'done' });
  }

  private flush(ctx: Context): Reply {
    if (ctx.method !== 'POST') return ok({ status: 'failed' });
    this.tables.get(ctx.params[0] ?? '')?.clear();
    return ok({ status: 'done' });
  }

  private async list(ctx: Context): Promise<Reply> {
    const fields: Record<string, unknown> = { ...Object.fromEntries(ctx.query), ...ctx.post };
    // configd's `pfctl -vT show` loads the whole table, whatever page is asked for.
    const size = this.tables.get(ctx.params[0] ?? '')?.size ?? 0;
    if (this.listCostMsPer10k > 0) await delay((size / 10_000) * this.listCostMsPer10k);
    if (size > this.listMemoryLimit) return { status: 500, json: BODY_UNEXPECTED };
    if (this.configdTimeoutCount > 0) {
      // json_decode(nothing) ?? []: an empty table as far as the caller can tell.
      this.configdTimeoutCount -= 1;
      return ok({ total: 0, rowCount: 0, current: 1, rows: [] });
    }
    let rowCount = intField(fields, 'rowCount', DEFAULT_LIST_ROWS);
    const current = Math.max(1, intField(fields, 'current', 1));
    const phrase = (stringField(fields, 'searchPhrase') ?? '').toLowerCase();
    if (this.listPageCap !== null) rowCount = rowCount > 0 ? Math.min(rowCount, this.listPageCap) : this.listPageCap;
    let entries = this.pfTable(ctx.params[0] ?? '');
    if (phrase !== '') entries = entries.filter((ip) => ip.toLowerCase().includes(phrase));
    const page = rowCount > 0 ? entries.slice((current - 1) * rowCount, current * rowCount) : entries;
    return ok({ total: entries.length, rowCount: page.length, current, rows: page.map((ip) => ({ ip })) });
  }

  private findReferences(ctx: Context): Reply {
    const ip = stringField(ctx.post, 'ip');
    if (ctx.method !== 'POST' || ip === undefined) return ok({ status: 'IP parameter not specified!' });
    const parsed = parseAddress(ip);
    if (parsed === null) return ok({ status: 'Not an IP address!' });
    if (parsed.prefix !== null) return ok({ status: 'Invalid IP specified!' });
    const matches: string[] = [];
    for (const [name, table] of this.tables) {
      for (const entry of table) {
        const net = parseAddress(entry);
        if (net !== null && contains(net, parsed)) {
          matches.push(name);
          break;
        }
      }
    }
    return ok({ status: 'ok', matches });
  }

  // --- alias (config) ----------------------------------------------------------------

  private findByUuid(uuid: string | undefined): AliasState | undefined {
    if (uuid === undefined) return undefined;
    for (const alias of this.aliasStates.values()) if (alias.uuid === uuid) return alias;
    return undefined;
  }

  private getItem(ctx: Context): Reply {
    // An unknown UUID (or none) gives a blank item with the defaults, not [].
    const alias = this.findByUuid(ctx.params[0]);
    const type = Object.fromEntries(
      Object.entries(TYPE_LABELS).map(([key, value]) => [key, { value, selected: key === alias?.type ? 1 : 0 }]),
    );
    const content: Record<string, { value: string; selected: number; description?: string }> = Object.fromEntries(
      (alias?.config ?? []).map((entry) => [entry, { value: entry, selected: 1 }]),
    );
    // Other aliases are offered as unselected options (for nesting), with their descriptions.
    for (const other of this.aliasStates.values()) {
      content[other.name] = { ...(content[other.name] ?? { value: other.name, selected: 0 }), description: other.description };
    }
    return ok({
      alias: {
        enabled: alias === undefined || alias.enabled ? '1' : '0',
        name: alias?.name ?? '',
        type,
        content,
        expire: alias?.expire === null || alias === undefined ? '' : String(alias.expire),
        description: alias?.description ?? '',
      },
    });
  }

  private async setItem(ctx: Context): Promise<Reply> {
    const alias = this.findByUuid(ctx.params[0]);
    const item = ctx.post['alias'];
    if (ctx.method !== 'POST' || !isRecord(item)) return ok({ result: 'failed' });
    // An unknown UUID makes a new alias, which fails validation on its missing name.
    if (alias === undefined) return ok({ result: 'failed', validations: { 'alias.name': 'A value is required.' } });
    if (this.setItemRefusal !== null) return ok({ result: 'failed', validations: { 'alias.content': this.setItemRefusal } });
    const description = stringField(item, 'description');
    const text = stringField(item, 'content');
    let content: string[] | undefined;
    if (text !== undefined && (alias.type === 'host' || alias.type === 'network')) {
      const type = alias.type;
      content = [...new Set(text.split('\n').map((line) => line.trim()).filter((line) => line !== ''))];
      const bad = content.filter((entry) => !validForAlias(type, entry));
      if (bad.length > 0) {
        return ok({ result: 'failed', validations: { 'alias.content': bad.map((e) => validationMessage(type, e)).join('\n') } });
      }
    }
    await this.withConfigLock(true, () => {
      if (content !== undefined) alias.config = content;
      if (description !== undefined) alias.description = description;
    });
    return ok({ result: 'saved' });
  }

  private async reconfigure(ctx: Context): Promise<Reply> {
    if (ctx.method !== 'POST') return ok({ status: 'failed' });
    // A full filter reload: any alias that fails to load, ours or not, makes it a 500.
    if (this.brokenAlias() !== undefined) return { status: 500, json: BODY_UNEXPECTED };
    // A reconfigure while another runs is skipped, yet still answered ok.
    if (this.reconfiguring) return ok({ status: 'ok' });
    this.reconfiguring = true;
    try {
      const snapshot = [...this.aliasStates.values()].map((alias) => ({ ...alias, config: [...alias.config] }));
      if (this.reconfigureMs > 0) await delay(this.reconfigureMs);
      for (const alias of snapshot) this.reload(alias);
    } finally {
      this.reconfiguring = false;
    }
    return ok({ status: 'ok' });
  }

  private killStates(ctx: Context): Reply {
    const filter = stringField(ctx.post, 'filter');
    if (ctx.method !== 'POST' || filter === undefined) return ok({ result: 'failed' });
    let dropped = 0;
    // The `query` sanitiser strips ':' and '/': an IPv6 address matches nothing, yet answers ok.
    const sanitised = filter.replace(/[:/]/g, '');
    if (sanitised.trim() === '') {
      // An empty filter matches every state, as pfctl would.
      for (const count of this.stateCounts.values()) dropped += count;
      this.stateCounts.clear();
    } else {
      dropped = this.stateCounts.get(sanitised.trim()) ?? 0;
      this.stateCounts.delete(sanitised.trim());
    }
    return ok({ result: 'ok', dropped_states: dropped });
  }

  // --- helpers -----------------------------------------------------------------------

  private table(name: string): Set<string> {
    let table = this.tables.get(name);
    if (table === undefined) {
      table = new Set();
      this.tables.set(name, table);
    }
    return table;
  }

  private loadFromConfig(alias: Pick<AliasState, 'name' | 'config'>): void {
    const table = new Set<string>();
    for (const entry of alias.config) {
      const parsed = parseAddress(entry);
      if (parsed !== null) table.add(renderForPf(parsed));
    }
    this.tables.set(alias.name, table);
  }

  /** Runs `change` in its turn under the global config lock; `saves`: a config save (host/network) follows. */
  private withConfigLock(saves: boolean, change: () => void): Promise<void> {
    const run = this.configLock.then(async () => {
      const start = Date.now() - this.startedAt;
      change();
      if (saves && this.configSaveMs > 0) await delay(this.configSaveMs);
      this.lockTurns.push([start, Date.now() - this.startedAt]);
    });
    this.configLock = run.catch(() => undefined);
    return run;
  }

  private tableEntriesUsed(): number {
    let used = 0;
    for (const table of this.tables.values()) used += table.size;
    return used;
  }

  private addedAt(name: string): Map<string, number> {
    let times = this.entryTimes.get(name);
    if (times === undefined) this.entryTimes.set(name, (times = new Map()));
    return times;
  }

  /** An enabled host/network alias whose config no longer passes validation. */
  private brokenAlias(): AliasState | undefined {
    for (const alias of this.aliasStates.values()) {
      if (!alias.enabled || (alias.type !== 'host' && alias.type !== 'network')) continue;
      const type = alias.type;
      if (alias.config.some((entry) => !validForAlias(type, entry))) return alias;
    }
    return undefined;
  }

  /** What a filter reload makes of an alias's pf table. */
  private reload(alias: AliasState): void {
    if (!alias.enabled || alias.type === 'port' || alias.type === 'mac') this.tables.delete(alias.name);
    else if (alias.type === 'host' || alias.type === 'network') this.loadFromConfig(alias);
    // Generated tables are rebuilt from their source (none here): whatever was added goes.
    else if (GENERATED_TYPES.has(alias.type)) this.tables.set(alias.name, new Set());
  }
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_BODY_BYTES) throw new Error('fake OPNsense: request body too large');
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startFakeOpnsense(options: FakeOpnsenseOptions = {}): Promise<FakeOpnsense> {
  const host = options.host ?? '127.0.0.1';
  const tls = options.tls ?? true;
  let tempDir: string | undefined;
  let certPath: string | undefined;
  let keyPath: string | undefined;
  if (tls) {
    tempDir = await mkdtemp(join(tmpdir(), 'fake-opnsense-'));
    ({ certPath, keyPath } = await makeCertificate(tempDir, host));
  }
  const fake = new FakeOpnsenseServer(host, certPath, tempDir, tls, options.tableEntriesLimit ?? 1_000_000, options);
  try {
    await fake.start(keyPath);
  } catch (error) {
    await fake.close();
    throw error;
  }
  return fake;
}
