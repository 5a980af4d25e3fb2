/**
 * Client for ONE OPNsense firewall's alias API (alias_util for single addresses, alias for
 * the config-level bulk path, diagnostics for killing states).
 *
 * OPNsense answers most failures with HTTP 200 and a status field, so every answer is
 * checked field by field; anything unexpected becomes an OpnsenseError. The API key and
 * secret only ever live in a private field and the Authorization header: they never appear
 * in errors.
 */
import http from 'node:http';
import https from 'node:https';
import type { Firewall } from '../../../../src/config.js';
import { OpnsenseError, type OpnsenseErrorDetails } from './errors.js';
import { pfRendering } from './pf-rendering.js';

export { OpnsenseError, type OpnsenseErrorKind } from './errors.js';
export { pfRendering } from './pf-rendering.js';

export interface OpnsenseClientOptions {
  /** https://host[:port][/prefix], or http://… only when the firewall really serves plain HTTP. */
  baseUrl: string;
  key: string;
  secret: string;
  /** Verify the firewall's TLS certificate (against `ca` when given, else the system CAs). */
  verifyTls: boolean;
  /** PEM content of the certificate (or its CA) that the firewall presents (opn_ca_file, read with the config). */
  ca?: string | Buffer;
  /** Per request, from getting a connection to the end of the answer (default 15 s). */
  timeoutMs?: number;
  /**
   * For a list, which makes the firewall load and render the whole pf table however few rows
   * are asked for (default 5 min, enough for a table of ~2 million entries).
   */
  listTimeoutMs?: number;
  /** Maximum parallel connections to this firewall (default 4). */
  maxSockets?: number;
}

export interface AliasItem {
  name: string;
  /** 'host', 'network', 'external', 'urltable', … as OPNsense names the type. */
  type: string;
  enabled: boolean;
  /** Seconds after which an external alias ages its entries out; null when not set. */
  expire: number | null;
  /** Content as stored in config (network aliases hold "1.2.3.4/32"). */
  content: string[];
}

/** get_table_size: pf's table-entries limit, the entries of all tables, and each table's count. */
export interface TableSizes {
  limit: number;
  used: number;
  counts: Map<string, number>;
}

type Privilege = 'alias_util' | 'alias_read' | 'alias_edit' | 'states';

/** The privileges (System: Access: Users) as OPNsense's ACL names them, with the URI patterns they allow. */
export const PRIVILEGE_NAMES: Record<Privilege, string> = {
  alias_util: '"Diagnostics: PF Table IP addresses" (api/firewall/alias_util/*)',
  alias_read: '"Firewall: Aliases" (api/firewall/alias/get*, reading alias types) or "Firewall: Alias: Edit"',
  alias_edit: '"Firewall: Alias: Edit" (api/firewall/alias/*)',
  states: '"Diagnostics: Show States" (api/diagnostics/firewall/kill_states*, needed by opn_kill_states)',
};

/** Node's codes for a certificate that could not be verified. */
const TLS_VERIFY_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
/** A listing of ~2.2 million entries, where PHP on the firewall runs out of memory anyway. */
const MAX_LIST_BYTES = 384 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 15_000;
const DEFAULT_LIST_TIMEOUT_MS = 300_000;
/**
 * Idle kept-alive sockets are dropped after this, before the usual 5 s server-side idle
 * close, so that a request rarely lands on a socket the firewall is closing. (The agent only
 * destroys free sockets on this timeout; requests have their own deadline.)
 */
const IDLE_SOCKET_MS = 4_000;

interface Call {
  method: 'GET' | 'POST';
  /** Path below the base URL, already encoded. */
  path: string;
  body?: Record<string, unknown>;
  /** What was being done, for messages: 'add 1.2.3.4 to alias "bans"'. */
  what: string;
  alias?: string;
  /** The address sent, for messages. */
  address?: string;
  privilege: Privilege;
  /** A list: its own timeout and answer size. */
  listing?: true;
}

interface RawAnswer {
  status: number;
  text: string;
}

class TimeoutFailure extends Error {
  constructor(readonly ms: number) {
    super(`no answer within ${ms} ms`);
  }
}

/** The client for a firewall of the config (opn_fw_ip, [opn_keys]), checking its TLS as configured (opn_verify, opn_ca_file). */
export function firewallClient(firewall: Firewall, tls: { verifyTls: boolean; ca?: Buffer }, options: Pick<OpnsenseClientOptions, 'timeoutMs' | 'listTimeoutMs' | 'maxSockets'> = {}): OpnsenseClient {
  return new OpnsenseClient({
    baseUrl: firewall.baseUrl,
    key: firewall.key,
    secret: firewall.secret,
    verifyTls: tls.verifyTls,
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...options,
  });
}

export class OpnsenseClient {
  /** The base URL as shown in messages (origin plus path prefix). */
  readonly firewall: string;
  readonly #authorization: string;
  private readonly url: URL;
  private readonly prefix: string;
  private readonly transport: typeof http | typeof https;
  private readonly agent: http.Agent;
  private readonly timeoutMs: number;
  private readonly listTimeoutMs: number;

  constructor(options: OpnsenseClientOptions) {
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      throw new Error(
        `OPNsense base URL "${safeUrlText(options.baseUrl)}" is not a URL; write it as https://firewall.example.org[:port]`,
      );
    }
    if (url.username !== '' || url.password !== '') {
      throw new Error(
        `OPNsense base URL for ${url.protocol}//${url.host} contains credentials; remove them and set the API key and secret options instead`,
      );
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new Error(`OPNsense base URL ${url.origin} must start with https:// (or http:// for a plain-HTTP GUI)`);
    }
    if (url.search !== '' || url.hash !== '') {
      throw new Error(`OPNsense base URL ${url.origin}${url.pathname} must not have a query or fragment`);
    }
    this.url = url;
    this.prefix = url.pathname.replace(/\/+$/, '');
    this.firewall = `${url.origin}${this.prefix}`;
    if (options.key === '' || options.secret === '') {
      throw new Error(`OPNsense ${this.firewall}: API key and secret must both be set`);
    }
    this.#authorization = `Basic ${Buffer.from(`${options.key}:${options.secret}`, 'utf8').toString('base64')}`;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.listTimeoutMs = options.listTimeoutMs ?? DEFAULT_LIST_TIMEOUT_MS;
    const maxSockets = options.maxSockets ?? 4;

    if (url.protocol === 'https:') {
      this.transport = https;
      this.agent = new https.Agent({
        keepAlive: true,
        maxSockets,
        maxFreeSockets: maxSockets,
        timeout: IDLE_SOCKET_MS,
        rejectUnauthorized: options.verifyTls,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
      });
    } else {
      this.transport = http;
      this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, timeout: IDLE_SOCKET_MS });
    }
  }

  /** Adds one address to a pf table via alias_util (host/network aliases: also to config). */
  async add(alias: string, address: string): Promise<void> {
    await this.changeOne('add', 'to', alias, address);
  }

  /** Removes one address; OPNsense answers done even when it was absent. */
  async delete(alias: string, address: string): Promise<void> {
    await this.changeOne('delete', 'from', alias, address);
  }

  private async changeOne(verb: 'add' | 'delete', preposition: string, alias: string, address: string): Promise<void> {
    const ip = pfRendering(address);
    await this.expectDone({
      method: 'POST',
      path: `/api/firewall/alias_util/${verb}/${encodeURIComponent(alias)}`,
      body: { address: ip },
      what: `${verb} ${ip} ${preposition} alias "${alias}"`,
      alias,
      address: ip,
      privilege: 'alias_util',
    });
  }

  /** Every entry of the live pf table, in pf's rendering. An unknown table gives []. */
  async list(alias: string): Promise<string[]> {
    const call = (current: number, rowCount: number): Call => ({
      method: 'POST',
      path: `/api/firewall/alias_util/list/${encodeURIComponent(alias)}`,
      body: { current, rowCount },
      what: `list alias "${alias}"${current > 1 ? ` (page ${current})` : ''}`,
      alias,
      privilege: 'alias_util',
      listing: true,
    });
    const first = await this.listPage(call(1, -1));
    const seen = new Set(first.rows);
    // Older or capped firewalls ignore rowCount=-1 and return one page: follow the pages.
    if (first.total > first.rows.length && first.rows.length > 0) {
      const pageSize = first.rows.length;
      const pages = Math.ceil(first.total / pageSize);
      for (let current = 2; current <= pages + 1 && seen.size < first.total; current += 1) {
        const page = await this.listPage(call(current, pageSize));
        if (page.rows.length === 0) break;
        for (const ip of page.rows) seen.add(ip);
      }
    }
    return [...seen];
  }

  /**
   * Kills the pf states of one address; returns how many were dropped. The URL is spelt as
   * the ACL lists it (kill_states): privileges are matched against the raw URI.
   */
  async killStates(address: string): Promise<number> {
    const ip = pfRendering(address);
    const call: Call = {
      method: 'POST',
      path: '/api/diagnostics/firewall/kill_states',
      body: { filter: ip },
      what: `kill states of ${ip === '' ? '(empty address)' : ip}`,
      privilege: 'states',
    };
    // An empty filter would kill every state on the firewall.
    if (ip === '') {
      throw new OpnsenseError(`${this.prefixText(call)}: refusing an empty address, which would kill every state on the firewall`, {
        ...this.details(call),
        kind: 'not_an_address',
      });
    }
    const answer = await this.request(call);
    if (isRecord(answer) && answer['result'] === 'ok') {
      const dropped = Number(answer['dropped_states'] ?? 0);
      if (Number.isFinite(dropped)) return dropped;
    }
    if (isRecord(answer) && answer['result'] === 'failed') {
      throw new OpnsenseError(`${this.prefixText(call)}: the firewall answered result "failed"`, {
        ...this.details(call),
        kind: 'failed',
      });
    }
    throw this.badResponse(call, `expected {"result":"ok","dropped_states":n}, got ${snippet(JSON.stringify(answer))}`);
  }

  /** The config UUID of an alias, or null when no alias has that name. */
  async getAliasUuid(name: string): Promise<string | null> {
    const call: Call = {
      method: 'GET',
      path: `/api/firewall/alias/getAliasUUID/${encodeURIComponent(name)}`,
      what: `look up alias "${name}"`,
      alias: name,
      privilege: 'alias_read',
    };
    const answer = await this.request(call);
    // Not found is an empty array, not an object.
    if (Array.isArray(answer) && answer.length === 0) return null;
    if (isRecord(answer) && typeof answer['uuid'] === 'string' && answer['uuid'] !== '') return answer['uuid'];
    throw this.badResponse(call, `expected {"uuid":…} or [], got ${snippet(JSON.stringify(answer))}`);
  }

  /** The alias as stored in config, or null for an unknown UUID (which OPNsense answers with a blank item). */
  async getAliasItem(uuid: string, aliasName?: string): Promise<AliasItem | null> {
    const call: Call = {
      method: 'GET',
      path: `/api/firewall/alias/get_item/${encodeURIComponent(uuid)}`,
      what: `read alias ${aliasName === undefined ? uuid : `"${aliasName}"`}`,
      privilege: 'alias_read',
      ...(aliasName === undefined ? {} : { alias: aliasName }),
    };
    const answer = await this.request(call);
    if (Array.isArray(answer) && answer.length === 0) return null;
    const item = isRecord(answer) ? answer['alias'] : undefined;
    if (!isRecord(item)) throw this.badResponse(call, 'expected {"alias":{…}}');
    const name = typeof item['name'] === 'string' ? item['name'] : '';
    if (name === '') return null;
    const expire = Number(item['expire']);
    return {
      name,
      type: selectedKeys(item['type'])[0] ?? '',
      enabled: String(item['enabled'] ?? '1') !== '0',
      expire: item['expire'] === '' || item['expire'] === undefined || !Number.isFinite(expire) ? null : expire,
      content: selectedKeys(item['content']).filter((entry) => entry !== ''),
    };
  }

  /** pf's table-entries limit and the size of every table, or null when the firewall could not tell (configd). */
  async tableSizes(): Promise<TableSizes | null> {
    const call: Call = { method: 'GET', path: '/api/firewall/alias/get_table_size', what: 'read pf table sizes', privilege: 'alias_read' };
    const answer = await this.request(call);
    if (!isRecord(answer) || answer['status'] !== 'ok') return null;
    const counts = new Map<string, number>();
    if (isRecord(answer['details'])) {
      for (const [table, detail] of Object.entries(answer['details'])) {
        const count = isRecord(detail) ? Number(detail['count']) : NaN;
        if (Number.isFinite(count)) counts.set(table, count);
      }
    }
    return { limit: Number(answer['size']) || 0, used: Number(answer['used']) || 0, counts };
  }

  /** Names of the firewall's pf tables; the cheapest call that needs the alias_util privilege. */
  async tableNames(): Promise<string[]> {
    const call: Call = { method: 'GET', path: '/api/firewall/alias_util/aliases', what: 'list pf tables', privilege: 'alias_util' };
    const answer = await this.request(call);
    if (Array.isArray(answer) && answer.every((name) => typeof name === 'string')) return answer as string[];
    throw this.badResponse(call, `expected an array of table names, got ${snippet(JSON.stringify(answer))}`);
  }

  /**
   * Proves without changing anything that this key may write to the alias: a delete without
   * an address answers "failed", while a missing privilege is a 403 and a read-only user a 500.
   */
  async checkWriteAccess(alias: string): Promise<void> {
    const call: Call = {
      method: 'POST',
      path: `/api/firewall/alias_util/delete/${encodeURIComponent(alias)}`,
      body: {},
      what: `check write access to alias "${alias}"`,
      alias,
      privilege: 'alias_util',
    };
    const answer = await this.request(call);
    if (!isRecord(answer) || (answer['status'] !== 'failed' && answer['status'] !== 'done')) {
      throw this.badResponse(call, `expected {"status":"failed"}, got ${snippet(JSON.stringify(answer))}`);
    }
  }

  /** Proves without killing anything that this key may kill states: no filter answers "failed". */
  async checkKillStatesAccess(): Promise<void> {
    const call: Call = { method: 'POST', path: '/api/diagnostics/firewall/kill_states', body: {}, what: 'check the kill-states privilege', privilege: 'states' };
    const answer = await this.request(call);
    if (!isRecord(answer) || (answer['result'] !== 'failed' && answer['result'] !== 'ok')) {
      throw this.badResponse(call, `expected {"result":"failed"}, got ${snippet(JSON.stringify(answer))}`);
    }
  }

  /**
   * Replaces an alias's content in config only (nothing reaches pf until reconfigure).
   * This is read-modify-write on the caller's side and races with alias_util calls.
   */
  async setAliasContent(uuid: string, content: string[], aliasName?: string): Promise<void> {
    const call: Call = {
      method: 'POST',
      path: `/api/firewall/alias/set_item/${encodeURIComponent(uuid)}`,
      body: { alias: { content: content.join('\n') } },
      what: `replace content of alias ${aliasName === undefined ? uuid : `"${aliasName}"`} (${content.length} entries)`,
      privilege: 'alias_edit',
      ...(aliasName === undefined ? {} : { alias: aliasName }),
    };
    const answer = await this.request(call);
    if (isRecord(answer) && answer['result'] === 'saved') return;
    if (isRecord(answer) && answer['result'] === 'failed') {
      const validations = isRecord(answer['validations'])
        ? Object.entries(answer['validations']).map(([field, text]) => `${field}: ${String(text)}`).join('; ')
        : '';
      throw new OpnsenseError(
        `${this.prefixText(call)}: the firewall refused the content${validations === '' ? ' (result "failed"; does the alias still exist?)' : ` (${snippet(validations)})`}; fix or drop the rejected entries`,
        { ...this.details(call), kind: 'failed' },
      );
    }
    throw this.badResponse(call, `expected {"result":"saved"}, got ${snippet(JSON.stringify(answer))}`);
  }

  /**
   * Applies config to pf. A reconfigure that overlaps another one may be skipped while still
   * answering ok, so callers that must be sure should verify with list().
   */
  async reconfigure(): Promise<void> {
    const call: Call = {
      method: 'POST',
      path: '/api/firewall/alias/reconfigure',
      what: 'apply aliases (reconfigure)',
      privilege: 'alias_edit',
    };
    const answer = await this.request(call);
    if (isRecord(answer) && answer['status'] === 'ok') return;
    throw new OpnsenseError(`${this.prefixText(call)}: expected status "ok", got ${snippet(JSON.stringify(answer))}`, {
      ...this.details(call),
      ...(isRecord(answer) && answer['status'] === 'failed'
        ? { kind: 'failed' as const }
        : { kind: 'bad_response' as const }),
    });
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  // --- answers -----------------------------------------------------------------------

  private async expectDone(call: Call): Promise<void> {
    const answer = await this.request(call);
    const status = isRecord(answer) ? answer['status'] : undefined;
    if (status === 'done') return;
    const statusMsg = isRecord(answer) && typeof answer['status_msg'] === 'string' ? answer['status_msg'] : '';
    if (status === 'failed' && statusMsg.startsWith('nonexistent alias')) throw this.nonexistentAlias(call);
    if (status === 'not_an_address') {
      throw new OpnsenseError(
        `${this.prefixText(call)}: the firewall does not take "${call.address ?? ''}" as an address (status "not_an_address"; only 0-9, a-f, ':', '.', '/' are allowed); drop or fix the address`,
        { ...this.details(call), kind: 'not_an_address' },
      );
    }
    if (status === 'failed') {
      throw new OpnsenseError(
        `${this.prefixText(call)}: the firewall answered status "failed"${statusMsg === '' ? '' : ` (${snippet(statusMsg)})`}`,
        { ...this.details(call), kind: 'failed' },
      );
    }
    throw this.badResponse(call, `expected {"status":"done"}, got ${snippet(JSON.stringify(answer))}`);
  }

  private async listPage(call: Call): Promise<{ total: number; rows: string[] }> {
    const answer = await this.request(call);
    if (isRecord(answer) && Array.isArray(answer['rows'])) {
      const rows: string[] = [];
      for (const row of answer['rows']) {
        if (isRecord(row) && typeof row['ip'] === 'string') rows.push(row['ip']);
      }
      const total = Number(answer['total'] ?? rows.length);
      return { total: Number.isFinite(total) ? total : rows.length, rows };
    }
    throw this.badResponse(call, `expected {"total":n,"rows":[…]}, got ${snippet(JSON.stringify(answer))}`);
  }

  /** Sends the call and returns the parsed JSON of a 2xx answer; throws for everything else. */
  private async request(call: Call): Promise<unknown> {
    let raw: RawAnswer;
    try {
      raw = await this.send(call);
    } catch (error) {
      throw this.unreachable(call, error);
    }
    if (raw.status < 200 || raw.status > 299) throw this.httpError(call, raw);
    try {
      return JSON.parse(raw.text) as unknown;
    } catch {
      throw this.badResponse(call, `HTTP ${raw.status} with a body that is not JSON: ${snippet(raw.text)}`);
    }
  }

  private async send(call: Call): Promise<RawAnswer> {
    try {
      return await this.sendOnce(call);
    } catch (error) {
      // A kept-alive socket the firewall closed meanwhile: the request never arrived (every
      // call here is idempotent anyway), so one fresh attempt is safe.
      if (error instanceof StaleSocket) return this.sendOnce(call);
      throw error;
    }
  }

  private sendOnce(call: Call): Promise<RawAnswer> {
    const payload = call.body === undefined ? undefined : Buffer.from(JSON.stringify(call.body), 'utf8');
    const headers: http.OutgoingHttpHeaders = { Authorization: this.#authorization, Accept: 'application/json' };
    // A JSON content type on an empty body makes OPNsense answer 400.
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = payload.length;
    } else if (call.method === 'POST') {
      headers['Content-Length'] = 0;
    }
    const hostname = this.url.hostname.startsWith('[') ? this.url.hostname.slice(1, -1) : this.url.hostname;

    const timeoutMs = call.listing ? this.listTimeoutMs : this.timeoutMs;
    const maxBytes = call.listing ? MAX_LIST_BYTES : MAX_RESPONSE_BYTES;
    return new Promise<RawAnswer>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let timedOut = false;
      let settled = false;
      const finish = (error: unknown, answer?: RawAnswer): void => {
        if (settled) return;
        settled = true;
        if (timer !== undefined) clearTimeout(timer);
        if (answer !== undefined) resolve(answer);
        else reject(timedOut ? new TimeoutFailure(timeoutMs) : error);
      };
      const req = this.transport.request({
        protocol: this.url.protocol,
        hostname,
        port: this.url.port === '' ? undefined : Number(this.url.port),
        path: `${this.prefix}${call.path}`,
        method: call.method,
        headers,
        agent: this.agent,
      });
      req.on('socket', () => {
        if (timer !== undefined) return;
        timer = setTimeout(() => {
          timedOut = true;
          req.destroy(new TimeoutFailure(timeoutMs));
        }, timeoutMs);
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        const stale = req.reusedSocket && (error.code === 'ECONNRESET' || error.code === 'EPIPE');
        finish(stale ? new StaleSocket(error) : error);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            req.destroy(new AnswerTooLarge(maxBytes));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (error) => finish(error));
        res.on('aborted', () => finish(new Error('connection closed in the middle of the answer')));
        res.on('end', () => finish(undefined, { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      });
      req.end(payload);
    });
  }

  // --- errors ------------------------------------------------------------------------

  private prefixText(call: Call): string {
    return `OPNsense ${this.firewall}: ${call.what}`;
  }

  private details(call: Call): Omit<OpnsenseErrorDetails, 'kind'> {
    return {
      firewall: this.firewall,
      endpoint: `${this.prefix}${call.path}`,
      ...(call.alias === undefined ? {} : { alias: call.alias }),
    };
  }

  private nonexistentAlias(call: Call): OpnsenseError {
    const name = call.alias ?? '';
    return new OpnsenseError(
      `${this.prefixText(call)}: alias "${name}" does not exist on the firewall; create the alias ${name} on the firewall (Firewall: Aliases; type External (advanced) suits ban lists), names are case-sensitive`,
      { ...this.details(call), kind: 'nonexistent_alias' },
    );
  }

  private badResponse(call: Call, what: string): OpnsenseError {
    return new OpnsenseError(
      `${this.prefixText(call)}: unexpected answer (${what}); is ${this.firewall} an OPNsense API, not a proxy or another service?`,
      { ...this.details(call), kind: 'bad_response' },
    );
  }

  private httpError(call: Call, raw: RawAnswer): OpnsenseError {
    const status = raw.status;
    const body = parseJson(raw.text);
    const serverText = isRecord(body)
      ? [body['errorTitle'], body['errorMessage'], body['message']].filter((v) => typeof v === 'string').join(': ')
      : snippet(raw.text.replace(/<[^>]*>/g, ' '));
    const said = serverText === '' ? `HTTP ${status}` : `HTTP ${status}: ${snippet(serverText)}`;
    const details = { ...this.details(call), httpStatus: status };
    const lead = this.prefixText(call);
    const endpoint = `${this.prefix}${call.path}`;

    if (status === 401) {
      return new OpnsenseError(
        `${lead}: authentication failed (${said}); check the API key and secret configured for this firewall (System: Access: Users, API keys)`,
        { ...details, kind: 'auth' },
      );
    }
    if (status === 403) {
      return new OpnsenseError(
        `${lead}: the API user lacks a privilege (${said}); grant ${PRIVILEGE_NAMES[call.privilege]} to the user owning the API key (System: Access: Users)`,
        { ...details, kind: 'forbidden' },
      );
    }
    if (status === 400) {
      return new OpnsenseError(`${lead}: the firewall rejected the request as malformed (${said}); this is a bug in syncfail2ban, please report it`, {
        ...details,
        kind: 'bad_request',
      });
    }
    if (status === 404) {
      return new OpnsenseError(
        `${lead}: endpoint ${endpoint} not found (${said}); check that the base URL is the firewall's address without /api, and that the OPNsense version has this API`,
        { ...details, kind: 'not_found' },
      );
    }
    if (status >= 500) {
      if (isRecord(body) && body['errorTitle'] === 'General access') {
        return new OpnsenseError(
          `${lead}: the API user is read-only (${said}); use an API key of a user allowed to make changes`,
          { ...details, kind: 'server' },
        );
      }
      return new OpnsenseError(`${lead}: server error (${said}); ${serverErrorHint(call)}`, { ...details, kind: 'server' });
    }
    return new OpnsenseError(`${lead}: unexpected HTTP status (${said})`, {
      ...details,
      kind: 'bad_request',
    });
  }

  private unreachable(call: Call, error: unknown): OpnsenseError {
    const failure = error instanceof StaleSocket ? error.original : error;
    const code = (failure as NodeJS.ErrnoException | undefined)?.code;
    const text = errorText(failure);
    let message: string;
    // The firewall answered (or is answering) but the listing is too big: not unreachable.
    const kind = (failure instanceof TimeoutFailure && call.listing) || failure instanceof AnswerTooLarge ? 'server' : 'unreachable';
    if (failure instanceof TimeoutFailure && call.listing) {
      message = `the firewall did not finish the listing within ${failure.ms} ms (it loads the whole pf table for every list); keep the alias well below 2 million entries, will retry`;
    } else if (failure instanceof AnswerTooLarge) {
      message = `the firewall's answer is larger than ${failure.bytes} bytes; keep the alias well below 2 million entries, will retry`;
    } else if (failure instanceof TimeoutFailure) {
      message = `the firewall did not answer within ${failure.ms} ms; check it is up and not overloaded, will retry`;
    } else if (code !== undefined && TLS_VERIFY_CODES.has(code)) {
      message = `the firewall's TLS certificate could not be verified (${text}); set the CA file for this firewall to the certificate it presents (or its CA), or fix the certificate (its name must match ${this.url.hostname})`;
    } else if (code === 'EPROTO' || (code ?? '').startsWith('ERR_SSL_') || /SSL|TLS/.test(text)) {
      message = `TLS handshake failed (${text}); check that the port serves HTTPS (use http:// only if the GUI really is plain HTTP)`;
    } else {
      message = `cannot reach the firewall (${text}); check the address and port and that this host may connect to the web GUI, will retry`;
    }
    return new OpnsenseError(`${this.prefixText(call)}: ${message}`, { ...this.details(call), kind}, failure);
  }
}

class AnswerTooLarge extends Error {
  constructor(readonly bytes: number) {
    super(`answer larger than ${bytes} bytes`);
  }
}

class StaleSocket extends Error {
  constructor(readonly original: Error) {
    super(original.message);
  }
}

/** What an HTTP 500 most likely means for this call, and the fix. */
function serverErrorHint(call: Call): string {
  const alias = call.alias ?? '';
  if (call.listing) {
    return `the firewall loads the whole pf table for every list and PHP runs out of memory near 2 million entries: keep alias "${alias}" smaller (split it), or check the firewall's backend log; will retry`;
  }
  if (/\/alias_util\/(add|delete)\//.test(call.path)) {
    return `on a Host(s)/Network(s) alias OPNsense validates the whole content on every change, so one entry it refuses (this address, e.g. a network on a Host(s) alias, or one already stored) fails every change to alias "${alias}": open Firewall: Aliases, alias ${alias}, and fix or remove that entry (or make it an External (advanced) alias); will retry`;
  }
  if (call.path.endsWith('/reconfigure')) {
    return 'reconfigure reloads every alias on the firewall, and one alias that fails to load (not necessarily this one) makes it fail: check Firewall: Aliases and the backend log (System: Log Files: Backend); will retry';
  }
  return "check the firewall's backend log (System: Log Files: Backend), will retry";
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Keys of an OPNsense option map ({"a":{"value":…,"selected":1},…}) that are selected. */
function selectedKeys(value: unknown): string[] {
  if (!isRecord(value)) return [];
  return Object.entries(value)
    .filter(([, option]) => isRecord(option) && Number(option['selected']) === 1)
    .map(([key]) => key);
}

function errorText(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code !== undefined && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

function snippet(text: string | undefined, max = 200): string {
  const flat = (text ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

/** A URL-ish string for messages, with any user:password@ removed. */
function safeUrlText(text: string): string {
  return text.replace(/\/\/[^/@]*@/, '//');
}
