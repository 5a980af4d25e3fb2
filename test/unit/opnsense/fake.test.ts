/**
 * The fake OPNsense must answer like the real one (see opnsense-api.md): these tests talk to it
 * with raw node:https requests, one quirk at a time.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { waitFor } from '../../support/wait.js';
import { FAKE_API_KEY, startFakeOpnsense, type FakeApiKey, type FakeOpnsense } from '../../fakes/opnsense.js';

interface RawResult {
  status: number;
  contentType: string | undefined;
  text: string;
  json: unknown;
}

interface RawOptions {
  /** Key to authenticate with; null sends no Authorization header. */
  key?: FakeApiKey | null;
  authorization?: string;
  body?: string;
  contentType?: string;
  agent?: http.Agent;
}

function basic(key: { key: string; secret: string }): string {
  return `Basic ${Buffer.from(`${key.key}:${key.secret}`).toString('base64')}`;
}

function raw(fake: FakeOpnsense, method: string, path: string, options: RawOptions = {}): Promise<RawResult> {
  const url = new URL(path, fake.url);
  const headers: http.OutgoingHttpHeaders = {};
  const key = options.key === undefined ? FAKE_API_KEY : options.key;
  if (options.authorization !== undefined) headers['Authorization'] = options.authorization;
  else if (key !== null) headers['Authorization'] = basic(key);
  if (options.contentType !== undefined) headers['Content-Type'] = options.contentType;
  const body = options.body ?? '';
  headers['Content-Length'] = Buffer.byteLength(body);
  const transport = url.protocol === 'https:' ? https : http;
  const ca = fake.caCertPath === undefined ? undefined : readFileSync(fake.caCertPath);
  return new Promise((resolve, reject) => {
    const req = transport.request(
      url,
      { method, headers, agent: options.agent ?? false, ...(ca === undefined ? {} : { ca }) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function post(fake: FakeOpnsense, path: string, body: unknown, key?: FakeApiKey): Promise<RawResult> {
  return raw(fake, 'POST', path, { body: JSON.stringify(body), contentType: 'application/json', ...(key === undefined ? {} : { key }) });
}

async function rawError(fake: FakeOpnsense, path: string): Promise<NodeJS.ErrnoException> {
  try {
    await raw(fake, 'GET', path);
  } catch (error) {
    return error as NodeJS.ErrnoException;
  }
  throw new Error(`expected GET ${path} to fail at the connection level`);
}

const UTIL = '/api/firewall/alias_util';
const ALIAS = '/api/firewall/alias';

describe('fake OPNsense', function () {
  let fake: FakeOpnsense;

  beforeEach(async function () {
    fake = await startFakeOpnsense({
      keys: [
        FAKE_API_KEY,
        { key: 'util-only', secret: 's1', privileges: ['alias_util'] },
        { key: 'alias-only', secret: 's2', privileges: ['alias'] },
        { key: 'reader', secret: 's3', privileges: ['alias_util', 'alias', 'readonly'] },
      ],
      aliases: [
        { name: 'bans_host', type: 'host', content: ['10.0.0.1'] },
        { name: 'bans_net', type: 'network' },
        { name: 'bans_ext', type: 'external' },
      ],
    });
  });

  afterEach(async function () {
    await fake.close();
  });

  describe('transport and authentication', function () {
    it('serves HTTPS with a certificate that validates against caCertPath', async function () {
      expect(fake.url).to.match(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(fake.caCertPath).to.be.a('string');
      const result = await raw(fake, 'GET', `${UTIL}/aliases`);
      expect(result.status).to.equal(200);
      expect(result.contentType).to.match(/^application\/json/);
    });

    it('answers 401 for missing, malformed or wrong credentials', async function () {
      for (const options of [
        { key: null },
        { authorization: 'Basic !!!' },
        { authorization: 'Bearer abc' },
        { key: { key: FAKE_API_KEY.key, secret: 'wrong', privileges: [] } },
        { key: { key: 'nobody', secret: FAKE_API_KEY.secret, privileges: [] } },
      ] satisfies RawOptions[]) {
        const result = await raw(fake, 'GET', `${UTIL}/aliases`, options);
        expect(result.status).to.equal(401);
        expect(result.json).to.deep.equal({ status: 401, message: 'Authentication Failed' });
      }
    });

    it('answers 403 when the key lacks the privilege for the URI', async function () {
      const aliasOnly = { key: 'alias-only', secret: 's2', privileges: [] };
      const utilOnly = { key: 'util-only', secret: 's1', privileges: [] };
      const cases: Array<[FakeApiKey, string, string]> = [
        [aliasOnly, 'GET', `${UTIL}/list/bans_ext`],
        [utilOnly, 'GET', `${ALIAS}/getAliasUUID/bans_ext`],
        [utilOnly, 'POST', '/api/diagnostics/firewall/kill_states'],
      ];
      for (const [key, method, path] of cases) {
        const result = await raw(fake, method, path, { key });
        expect(result.status, path).to.equal(403);
        expect(result.json).to.deep.equal({ status: 403, message: 'Forbidden' });
      }
    });

    it('answers 400 to a JSON content type with an empty body, for any method', async function () {
      for (const [method, path] of [
        ['GET', `${UTIL}/aliases`],
        ['POST', `${UTIL}/flush/bans_ext`],
        ['PUT', `${UTIL}/list/bans_ext`],
      ] as const) {
        const result = await raw(fake, method, path, { contentType: 'application/json' });
        expect(result.status, `${method} ${path}`).to.equal(400);
        expect(result.json).to.deep.equal({ status: 400, message: 'Invalid JSON syntax' });
      }
      const broken = await raw(fake, 'POST', `${UTIL}/add/bans_ext`, { contentType: 'application/json', body: '{"address":' });
      expect(broken.status).to.equal(400);
      // The same request without a content type is fine.
      expect((await raw(fake, 'POST', `${UTIL}/flush/bans_ext`)).json).to.deep.equal({ status: 'done' });
    });

    it('answers 404 for unknown endpoints and missing path parameters', async function () {
      for (const path of [`${UTIL}/nope/bans_ext`, '/api/core/firmware/status', '/index.php', `${UTIL}/add`, `${UTIL}/list/`, `${ALIAS}/set_item`]) {
        const result = await raw(fake, 'POST', path, { body: '{"address":"1.2.3.4"}', contentType: 'application/json' });
        expect(result.status, path).to.equal(404);
        expect(result.json).to.deep.equal({ errorMessage: 'Endpoint not found' });
      }
    });

    it('accepts snake_case and camelCase action names and counts them as one endpoint', async function () {
      const snake = await post(fake, `${UTIL}/find_references`, { ip: '10.0.0.1' });
      const camel = await post(fake, `${UTIL}/findReferences`, { ip: '10.0.0.1' });
      expect(snake.json).to.deep.equal({ status: 'ok', matches: ['bans_host'] });
      expect(camel.json).to.deep.equal(snake.json);
      const uuid = fake.uuidOf('bans_ext');
      for (const path of [`${ALIAS}/getAliasUUID/bans_ext`, `${ALIAS}/get_alias_uuid/bans_ext`, `${ALIAS}/getAliasUuid/bans_ext`]) {
        expect((await raw(fake, 'GET', path)).json, path).to.deep.equal({ uuid });
      }
      expect(fake.requests.byEndpoint['firewall/alias_util/find_references']).to.equal(2);
      expect(fake.requests.byEndpoint['firewall/alias/get_alias_uuid']).to.equal(3);
    });

    it('serves plain HTTP when tls is false, and listens on another loopback address', async function () {
      const plain = await startFakeOpnsense({ tls: false, host: '127.0.0.5' });
      try {
        expect(plain.url).to.match(/^http:\/\/127\.0\.0\.5:\d+$/);
        expect(plain.caCertPath).to.equal(undefined);
        const result = await raw(plain, 'GET', `${UTIL}/aliases`);
        expect(result.status).to.equal(200);
      } finally {
        await plain.close();
      }
    });
  });

  describe('alias_util/add', function () {
    it('answers failed (HTTP 200) when not POST or without an address', async function () {
      const viaGet = await raw(fake, 'GET', `${UTIL}/add/bans_ext`);
      expect(viaGet.status).to.equal(200);
      expect(viaGet.json).to.deep.equal({ status: 'failed' });
      expect((await post(fake, `${UTIL}/add/bans_ext`, { ip: '1.2.3.4' })).json).to.deep.equal({ status: 'failed' });
      expect(fake.pfTable('bans_ext')).to.deep.equal([]);
    });

    it('answers not_an_address for any character outside [0-9a-f:./_]', async function () {
      for (const address of ['2001:DB8::1', '1.2.3.4 ', '1.2.3.4,5.6.7.8', 'example.com']) {
        const result = await post(fake, `${UTIL}/add/bans_ext`, { address });
        expect(result.status).to.equal(200);
        expect(result.json, address).to.deep.equal({ status: 'not_an_address' });
      }
      expect(fake.pfTable('bans_ext')).to.deep.equal([]);
    });

    it('names a nonexistent alias (names are case-sensitive)', async function () {
      const result = await post(fake, `${UTIL}/add/BANS_EXT`, { address: '1.2.3.4' });
      expect(result.status).to.equal(200);
      expect(result.json).to.deep.equal({ status: 'failed', status_msg: 'nonexistent alias BANS_EXT' });
    });

    it('adds to the pf table only on an external alias, in pf rendering', async function () {
      for (const address of ['1.2.3.4', '1.2.3.4', '5.6.7.8/32', '2001:db8:0:0::1/128', '10.1.2.3/8']) {
        expect((await post(fake, `${UTIL}/add/bans_ext`, { address })).json).to.deep.equal({ status: 'done' });
      }
      expect(fake.pfTable('bans_ext')).to.deep.equal(['1.2.3.4', '5.6.7.8', '2001:db8::1', '10.0.0.0/8']);
      expect(fake.configContent('bans_ext')).to.deep.equal([]);
    });

    it('writes config and pf on a host alias; invalid content gives 500 and leaves pf alone', async function () {
      expect((await post(fake, `${UTIL}/add/bans_host`, { address: '1.2.3.4' })).json).to.deep.equal({ status: 'done' });
      expect(fake.configContent('bans_host')).to.deep.equal(['10.0.0.1', '1.2.3.4']);
      expect(fake.pfTable('bans_host')).to.deep.equal(['10.0.0.1', '1.2.3.4']);
      for (const address of ['999.1.1.1', '1.2.3.0/24']) {
        const result = await post(fake, `${UTIL}/add/bans_host`, { address });
        expect(result.status, address).to.equal(500);
        expect(result.json).to.deep.equal({ errorMessage: 'Unexpected error, check log for details' });
      }
      expect(fake.configContent('bans_host')).to.deep.equal(['10.0.0.1', '1.2.3.4']);
      expect(fake.pfTable('bans_host')).to.deep.equal(['10.0.0.1', '1.2.3.4']);
    });

    it('appends /32 or /128 on a network alias when no mask is given', async function () {
      await post(fake, `${UTIL}/add/bans_net`, { address: '1.2.3.4' });
      await post(fake, `${UTIL}/add/bans_net`, { address: '2001:db8::1' });
      await post(fake, `${UTIL}/add/bans_net`, { address: '192.168.0.0/16' });
      expect(fake.configContent('bans_net')).to.deep.equal(['1.2.3.4/32', '2001:db8::1/128', '192.168.0.0/16']);
      expect(fake.pfTable('bans_net')).to.deep.equal(['1.2.3.4', '2001:db8::1', '192.168.0.0/16']);
      expect((await post(fake, `${UTIL}/add/bans_net`, { address: '1.2.3.4/33' })).status).to.equal(500);
    });
  });

  describe('alias_util/delete and flush', function () {
    it('answers done for an unknown alias or an absent address, failed when not POST or no address', async function () {
      expect((await post(fake, `${UTIL}/delete/no_such_alias`, { address: '1.2.3.4' })).json).to.deep.equal({ status: 'done' });
      expect((await post(fake, `${UTIL}/delete/bans_ext`, { address: '9.9.9.9' })).json).to.deep.equal({ status: 'done' });
      expect((await raw(fake, 'GET', `${UTIL}/delete/bans_ext`)).json).to.deep.equal({ status: 'failed' });
      expect((await post(fake, `${UTIL}/delete/bans_ext`, {})).json).to.deep.equal({ status: 'failed' });
      expect((await post(fake, `${UTIL}/delete/bans_ext`, { address: 'ABC::1' })).json).to.deep.equal({ status: 'not_an_address' });
    });

    it('removes a pf entry only when the string equals pf rendering', async function () {
      await post(fake, `${UTIL}/add/bans_ext`, { address: '1.2.3.4' });
      expect((await post(fake, `${UTIL}/delete/bans_ext`, { address: '1.2.3.4/32' })).json).to.deep.equal({ status: 'done' });
      expect(fake.pfTable('bans_ext')).to.deep.equal(['1.2.3.4']);
      await post(fake, `${UTIL}/delete/bans_ext`, { address: '1.2.3.4' });
      expect(fake.pfTable('bans_ext')).to.deep.equal([]);
    });

    it('on a network alias, "1.2.3.4/32" leaves the pf entry while config loses it', async function () {
      await post(fake, `${UTIL}/add/bans_net`, { address: '1.2.3.4' });
      await post(fake, `${UTIL}/delete/bans_net`, { address: '1.2.3.4/32' });
      expect(fake.configContent('bans_net')).to.deep.equal([]);
      expect(fake.pfTable('bans_net')).to.deep.equal(['1.2.3.4']);
      await post(fake, `${UTIL}/add/bans_net`, { address: '5.6.7.8' });
      await post(fake, `${UTIL}/delete/bans_net`, { address: '5.6.7.8' });
      expect(fake.configContent('bans_net')).to.deep.equal([]);
      expect(fake.pfTable('bans_net')).to.deep.equal(['1.2.3.4']);
    });

    it('flush empties pf only: host content returns on reconfigure, external content does not', async function () {
      await post(fake, `${UTIL}/add/bans_ext`, { address: '1.2.3.4' });
      expect((await raw(fake, 'GET', `${UTIL}/flush/bans_host`)).json).to.deep.equal({ status: 'failed' });
      expect(fake.pfTable('bans_host')).to.deep.equal(['10.0.0.1']);
      for (const alias of ['bans_host', 'bans_ext', 'unknown_alias']) {
        expect((await raw(fake, 'POST', `${UTIL}/flush/${alias}`)).json).to.deep.equal({ status: 'done' });
      }
      expect(fake.pfTable('bans_host')).to.deep.equal([]);
      expect(fake.configContent('bans_host')).to.deep.equal(['10.0.0.1']);
      expect(fake.pfTable('bans_ext')).to.deep.equal([]);
      expect((await raw(fake, 'GET', `${ALIAS}/reconfigure`)).json).to.deep.equal({ status: 'failed' });
      expect(fake.pfTable('bans_host')).to.deep.equal([]);
      expect((await raw(fake, 'POST', `${ALIAS}/reconfigure`)).json).to.deep.equal({ status: 'ok' });
      expect(fake.pfTable('bans_host')).to.deep.equal(['10.0.0.1']);
      expect(fake.pfTable('bans_ext')).to.deep.equal([]);
    });
  });

  describe('alias_util/list, aliases, find_references', function () {
    const many = Array.from({ length: 12_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);

    it('serves 9,999 rows by default, all with rowCount=-1 (GET query or POST body), and pages', async function () {
      fake.setPfTable('bans_ext', many);
      const byDefault = (await raw(fake, 'GET', `${UTIL}/list/bans_ext`)).json as { total: number; rowCount: number; current: number; rows: Array<{ ip: string }> };
      expect(byDefault.total).to.equal(12_000);
      expect(byDefault.rowCount).to.equal(9_999);
      expect(byDefault.current).to.equal(1);
      expect(byDefault.rows).to.have.length(9_999);
      expect(byDefault.rows[0]).to.deep.equal({ ip: '10.0.0.0' });

      const viaQuery = (await raw(fake, 'GET', `${UTIL}/list/bans_ext?rowCount=-1`)).json as { rows: unknown[] };
      expect(viaQuery.rows).to.have.length(12_000);
      const viaBody = (await post(fake, `${UTIL}/list/bans_ext`, { rowCount: -1, current: 1 })).json as { rows: unknown[] };
      expect(viaBody.rows).to.have.length(12_000);

      const second = (await post(fake, `${UTIL}/list/bans_ext`, { rowCount: 5_000, current: 3 })).json as { rowCount: number; current: number; rows: Array<{ ip: string }> };
      expect(second.current).to.equal(3);
      expect(second.rowCount).to.equal(2_000);
      expect(second.rows[0]?.ip).to.equal(many[10_000]);

      const searched = (await post(fake, `${UTIL}/list/bans_ext`, { searchPhrase: '10.0.1.25' })).json as { total: number };
      expect(searched.total).to.equal(7); // 10.0.1.25 and 10.0.1.250 … 10.0.1.255
    });

    it('answers total 0 for an unknown table', async function () {
      expect((await raw(fake, 'GET', `${UTIL}/list/nothing_here`)).json).to.deep.equal({ total: 0, rowCount: 0, current: 1, rows: [] });
    });

    it('capListPage simulates a firewall that ignores rowCount=-1', async function () {
      fake.setPfTable('bans_ext', many);
      fake.capListPage(9_999);
      const all = (await post(fake, `${UTIL}/list/bans_ext`, { rowCount: -1 })).json as { total: number; rows: unknown[] };
      expect(all.total).to.equal(12_000);
      expect(all.rows).to.have.length(9_999);
    });

    it('lists all pf table names, aliases and system tables', async function () {
      const names = (await raw(fake, 'GET', `${UTIL}/aliases`)).json;
      expect(names).to.be.an('array').that.includes.members(['bans_host', 'bans_net', 'bans_ext', 'bogons', 'sshlockout']);
    });

    it('find_references answers matches and the three error statuses', async function () {
      await post(fake, `${UTIL}/add/bans_net`, { address: '192.168.0.0/16' });
      expect((await post(fake, `${UTIL}/find_references`, { ip: '192.168.4.5' })).json).to.deep.equal({ status: 'ok', matches: ['bans_net'] });
      expect((await post(fake, `${UTIL}/find_references`, { ip: '8.8.8.8' })).json).to.deep.equal({ status: 'ok', matches: [] });
      expect((await post(fake, `${UTIL}/find_references`, { ip: 'hello' })).json).to.deep.equal({ status: 'Not an IP address!' });
      expect((await post(fake, `${UTIL}/find_references`, { ip: '10.0.0.0/8' })).json).to.deep.equal({ status: 'Invalid IP specified!' });
      expect((await post(fake, `${UTIL}/find_references`, {})).json).to.deep.equal({ status: 'IP parameter not specified!' });
    });
  });

  describe('read-only user', function () {
    it('gets 500 "General access" on add, delete and flush, but may list', async function () {
      const reader = { key: 'reader', secret: 's3', privileges: [] };
      for (const action of ['add', 'delete', 'flush']) {
        const result = await post(fake, `${UTIL}/${action}/bans_ext`, { address: '1.2.3.4' }, reader);
        expect(result.status, action).to.equal(500);
        expect((result.json as { errorTitle: string }).errorTitle).to.equal('General access');
      }
      expect(fake.pfTable('bans_ext')).to.deep.equal([]);
      expect((await raw(fake, 'GET', `${UTIL}/list/bans_ext`, { key: reader })).status).to.equal(200);
    });
  });

  describe('alias endpoints (config)', function () {
    it('getAliasUUID answers {uuid} or an empty array', async function () {
      const found = (await raw(fake, 'GET', `${ALIAS}/getAliasUUID/bans_host`)).json as { uuid: string };
      expect(found.uuid).to.equal(fake.uuidOf('bans_host')).and.to.match(/^[0-9a-f-]{36}$/);
      const missing = await raw(fake, 'GET', `${ALIAS}/getAliasUUID/missing`);
      expect(missing.status).to.equal(200);
      expect(missing.text).to.equal('[]');
    });

    it('get_item shows content as an option map; set_item replaces config only until reconfigure', async function () {
      const uuid = fake.uuidOf('bans_host') ?? '';
      const item = (await raw(fake, 'GET', `${ALIAS}/get_item/${uuid}`)).json as { alias: { name: string; content: unknown; type: Record<string, { selected: number }> } };
      expect(item.alias.name).to.equal('bans_host');
      const content = item.alias.content as Record<string, { selected: number }>;
      expect(content['10.0.0.1']).to.deep.equal({ value: '10.0.0.1', selected: 1 });
      expect(Object.keys(content).filter((key) => content[key]!.selected === 1), 'other aliases are offered unselected').to.deep.equal(['10.0.0.1']);
      expect(item.alias.type['host']?.selected).to.equal(1);

      const saved = await post(fake, `${ALIAS}/set_item/${uuid}`, { alias: { content: '1.1.1.1\n2.2.2.2' } });
      expect(saved.json).to.deep.equal({ result: 'saved' });
      expect(fake.configContent('bans_host')).to.deep.equal(['1.1.1.1', '2.2.2.2']);
      expect(fake.pfTable('bans_host')).to.deep.equal(['10.0.0.1']);
      await raw(fake, 'POST', `${ALIAS}/reconfigure`);
      expect(fake.pfTable('bans_host')).to.deep.equal(['1.1.1.1', '2.2.2.2']);
    });

    it('set_item answers failed with validations for content that does not fit the type', async function () {
      const uuid = fake.uuidOf('bans_host') ?? '';
      const result = (await post(fake, `${ALIAS}/set_item/${uuid}`, { alias: { content: '1.1.1.1\n999.1.1.1' } })).json as { result: string; validations: Record<string, string> };
      expect(result.result).to.equal('failed');
      expect(result.validations['alias.content']).to.contain('999.1.1.1');
      expect(fake.configContent('bans_host')).to.deep.equal(['10.0.0.1']);
      expect((await raw(fake, 'GET', `${ALIAS}/set_item/${uuid}`)).json).to.deep.equal({ result: 'failed' });
    });

    it('a reconfigure overlapping another is skipped yet answers ok', async function () {
      const uuid = fake.uuidOf('bans_host') ?? '';
      fake.setReconfigureMs(1_000);
      const first = raw(fake, 'POST', `${ALIAS}/reconfigure`);
      // The first one has taken its config snapshot once the fake has logged it.
      await waitFor(() => fake.requests.log.some((r) => r.endpoint === 'firewall/alias/reconfigure'), 'first reconfigure to arrive', 5_000, 5);
      await post(fake, `${ALIAS}/set_item/${uuid}`, { alias: { content: '3.3.3.3' } });
      const second = await raw(fake, 'POST', `${ALIAS}/reconfigure`);
      expect(second.json).to.deep.equal({ status: 'ok' });
      await first;
      expect(fake.pfTable('bans_host')).to.deep.equal(['10.0.0.1']);
      expect(fake.configContent('bans_host')).to.deep.equal(['3.3.3.3']);
    });

    it('get_table_size reports the limit, the entries in use and a count per table', async function () {
      await post(fake, `${UTIL}/add/bans_ext`, { address: '1.2.3.4' });
      const sizes = (await raw(fake, 'GET', `${ALIAS}/get_table_size`)).json as { status: string; size: number; used: number; details: Record<string, { count: number }> };
      expect(sizes).to.include({ status: 'ok', size: 1_000_000, used: 2 });
      expect(sizes.details['bans_ext']?.count).to.equal(1);
      expect(sizes.details['bans_host']?.count).to.equal(1);
      expect(sizes.details['bogons']?.count).to.equal(0);
    });

    it('get_item of an unknown UUID is a blank item, not []; set_item there fails on the missing name', async function () {
      const blank = (await raw(fake, 'GET', `${ALIAS}/get_item/00000000-0000-0000-0000-000000000000`)).json as { alias: { name: string; enabled: string; content: Record<string, { selected: number }> } };
      expect(blank.alias).to.include({ name: '', enabled: '1' });
      expect(blank.alias.content['bans_ext'], 'other aliases offered, unselected').to.include({ selected: 0 });
      const saved = await post(fake, `${ALIAS}/set_item/00000000-0000-0000-0000-000000000000`, { alias: { content: '1.1.1.1' } });
      expect(saved.json).to.deep.include({ result: 'failed' }).and.to.have.nested.property('validations.alias\\.name');
    });

    it('shows every alias type, the enabled state and expire', async function () {
      fake.defineAlias({ name: 'geo', type: 'geoip' });
      fake.defineAlias({ name: 'off', type: 'external', enabled: false });
      fake.defineAlias({ name: 'aging', type: 'external', expire: 3600 });
      const item = async (name: string) =>
        ((await raw(fake, 'GET', `${ALIAS}/get_item/${fake.uuidOf(name)}`)).json as { alias: { enabled: string; expire: string; type: Record<string, { selected: number }> } }).alias;
      const geo = await item('geo');
      expect(Object.keys(geo.type)).to.include.members(['host', 'network', 'external', 'urltable', 'geoip', 'networkgroup', 'port', 'mac']);
      expect(Object.entries(geo.type).filter(([, option]) => option.selected === 1).map(([key]) => key)).to.deep.equal(['geoip']);
      expect((await item('off')).enabled).to.equal('0');
      expect((await item('aging')).expire).to.equal('3600');
    });
  });

  describe('awkward parts of the real firewall', function () {
    it('matches privileges on the raw URI: killStates is 403 for "Diagnostics: Show States", kill_states is not, "All pages" allows both', async function () {
      const states = { key: 'states', secret: 's4', privileges: ['diagnostics'] } satisfies FakeApiKey;
      const all = { key: 'all', secret: 's5', privileges: ['all'] } satisfies FakeApiKey;
      await fake.close();
      fake = await startFakeOpnsense({ keys: [states, all] });
      fake.addStates('1.2.3.4', 3);
      expect((await post(fake, '/api/diagnostics/firewall/killStates', { filter: '1.2.3.4' }, states)).status).to.equal(403);
      expect((await post(fake, '/api/diagnostics/firewall/kill_states', { filter: '1.2.3.4' }, states)).json).to.deep.equal({ result: 'ok', dropped_states: 3 });
      fake.addStates('1.2.3.4', 2);
      expect((await post(fake, '/api/diagnostics/firewall/killStates', { filter: '1.2.3.4' }, all)).json).to.deep.equal({ result: 'ok', dropped_states: 2 });
      expect((await raw(fake, 'GET', '/api/diagnostics/firewall/kill_states', { key: states })).json).to.deep.equal({ result: 'failed' });
    });

    it('"Firewall: Aliases" may read alias config (get*) but not set_item or reconfigure', async function () {
      const viewer = { key: 'viewer', secret: 's6', privileges: ['aliases'] } satisfies FakeApiKey;
      await fake.close();
      fake = await startFakeOpnsense({ keys: [viewer], aliases: [{ name: 'h', type: 'host' }] });
      expect((await raw(fake, 'GET', `${ALIAS}/getAliasUUID/h`, { key: viewer })).status).to.equal(200);
      expect((await raw(fake, 'GET', `${ALIAS}/get_item/${fake.uuidOf('h')}`, { key: viewer })).status).to.equal(200);
      expect((await raw(fake, 'GET', `${ALIAS}/get_table_size`, { key: viewer })).status).to.equal(200);
      expect((await post(fake, `${ALIAS}/set_item/${fake.uuidOf('h')}`, { alias: { content: '1.1.1.1' } }, viewer)).status).to.equal(403);
      expect((await raw(fake, 'POST', `${ALIAS}/reconfigure`, { key: viewer })).status).to.equal(403);
      expect((await post(fake, `${UTIL}/add/h`, { address: '1.1.1.1' }, viewer)).status).to.equal(403);
    });

    it('kill_states strips ":" and "/" from the filter: an IPv6 address matches nothing and still answers ok', async function () {
      fake.addStates('2001:db8::1', 4);
      expect((await post(fake, '/api/diagnostics/firewall/kill_states', { filter: '2001:db8::1' })).json).to.deep.equal({ result: 'ok', dropped_states: 0 });
      expect(fake.states('2001:db8::1')).to.equal(4);
    });

    it('validates the whole content of a host alias on every add and delete: one stored bad entry makes each a 500, and every reconfigure', async function () {
      fake.storeInvalidEntry('bans_host', '10.1.0.0/16');
      expect((await post(fake, `${UTIL}/add/bans_host`, { address: '10.0.0.9' })).status).to.equal(500);
      expect((await post(fake, `${UTIL}/delete/bans_host`, { address: '10.0.0.1' })).status).to.equal(500);
      expect(fake.pfTable('bans_host')).to.deep.equal(['10.0.0.1']);
      expect((await post(fake, `${UTIL}/add/bans_ext`, { address: '10.0.0.9' })).json, 'external aliases are not validated').to.deep.equal({ status: 'done' });
      expect((await raw(fake, 'POST', `${ALIAS}/reconfigure`)).status, 'a full reload fails on any broken alias').to.equal(500);
    });

    it('adds the first entry of a host alias again, and delete removes one copy only', async function () {
      await post(fake, `${UTIL}/add/bans_host`, { address: '10.0.0.1' });
      await post(fake, `${UTIL}/add/bans_host`, { address: '10.0.0.2' });
      await post(fake, `${UTIL}/add/bans_host`, { address: '10.0.0.2' });
      expect(fake.configContent('bans_host')).to.deep.equal(['10.0.0.1', '10.0.0.1', '10.0.0.2']);
      await post(fake, `${UTIL}/delete/bans_host`, { address: '10.0.0.1' });
      expect(fake.configContent('bans_host')).to.deep.equal(['10.0.0.1', '10.0.0.2']);
      fake.reboot();
      expect(fake.pfTable('bans_host')).to.include('10.0.0.1');
    });

    it('answers done past the table-entries limit and keeps nothing', async function () {
      await fake.close();
      fake = await startFakeOpnsense({ tableEntriesLimit: 3, aliases: [{ name: 'ext', type: 'external' }] });
      for (const ip of ['1.1.1.1', '1.1.1.2', '1.1.1.3', '1.1.1.4']) expect((await post(fake, `${UTIL}/add/ext`, { address: ip })).json).to.deep.equal({ status: 'done' });
      expect(fake.pfTable('ext')).to.have.length(3).and.not.include('1.1.1.4');
    });

    it('answers done for every alias type, but only host, network and external keep the address', async function () {
      const kinds = ['urltable', 'geoip', 'networkgroup', 'port', 'mac'] as const;
      for (const type of kinds) fake.defineAlias({ name: type, type });
      fake.defineAlias({ name: 'off', type: 'external', enabled: false });
      fake.defineAlias({ name: 'aging', type: 'external', expire: 60 });
      for (const name of [...kinds, 'off', 'aging']) expect((await post(fake, `${UTIL}/add/${name}`, { address: '1.2.3.4' })).json, name).to.deep.equal({ status: 'done' });
      await raw(fake, 'POST', `${ALIAS}/reconfigure`); // generated tables are rebuilt from their source
      for (const name of [...kinds, 'off']) expect(fake.pfTable(name), name).to.deep.equal([]);
      expect(fake.pfTable('aging')).to.deep.equal(['1.2.3.4']);
      fake.elapse(61);
      expect(fake.pfTable('aging'), 'aged out').to.deep.equal([]);
    });

    it('list loads the whole table: out of memory (500) above the limit whatever rowCount says', async function () {
      await fake.close();
      fake = await startFakeOpnsense({ listMemoryLimitEntries: 100, aliases: [{ name: 'big', type: 'external', table: Array.from({ length: 101 }, (_, i) => `10.3.0.${i + 1}`) }] });
      const result = await post(fake, `${UTIL}/list/big`, { rowCount: 1, current: 1 });
      expect(result.status).to.equal(500);
    });

    it('answers a list whose configd call timed out as HTTP 200 with total 0', async function () {
      await post(fake, `${UTIL}/add/bans_ext`, { address: '1.2.3.4' });
      fake.configdTimeouts(1);
      const lost = await raw(fake, 'GET', `${UTIL}/list/bans_ext`);
      expect(lost.status).to.equal(200);
      expect(lost.json).to.deep.include({ total: 0, rows: [] });
      expect(((await raw(fake, 'GET', `${UTIL}/list/bans_ext`)).json as { total: number }).total).to.equal(1);
    });

    it('runs every alias_util write one at a time under the config lock, external aliases included', async function () {
      fake.setConfigSaveMs(5);
      await Promise.all([
        ...Array.from({ length: 6 }, (_, i) => post(fake, `${UTIL}/add/bans_ext`, { address: `10.4.0.${i + 1}` })),
        ...Array.from({ length: 6 }, (_, i) => post(fake, `${UTIL}/add/bans_host`, { address: `10.5.0.${i + 1}` })),
      ]);
      expect(fake.lockTurns).to.have.length(12);
      for (let i = 1; i < fake.lockTurns.length; i += 1) expect(fake.lockTurns[i]![0], `turn ${i} starts after turn ${i - 1} ends`).to.be.at.least(fake.lockTurns[i - 1]![1]);
    });
  });

  describe('fault switches', function () {
    it('reboot empties external tables and reloads host/network tables from config', async function () {
      await post(fake, `${UTIL}/add/bans_ext`, { address: '1.2.3.4' });
      await post(fake, `${UTIL}/add/bans_net`, { address: '5.6.7.8' });
      await raw(fake, 'POST', `${UTIL}/flush/bans_host`);
      fake.reboot();
      expect(fake.pfTable('bans_ext')).to.deep.equal([]);
      expect(fake.pfTable('bans_host')).to.deep.equal(['10.0.0.1']);
      expect(fake.pfTable('bans_net')).to.deep.equal(['5.6.7.8']);
    });

    it('setDown refuses connections (or resets them) and comes back on the same URL', async function () {
      const url = fake.url;
      await fake.setDown(true);
      expect((await rawError(fake, `${UTIL}/aliases`)).code).to.equal('ECONNREFUSED');
      await fake.setDown(true, 'reset');
      expect((await rawError(fake, `${UTIL}/aliases`)).code).to.be.oneOf(['ECONNRESET', 'EPIPE']);
      await fake.setDown(false);
      expect(fake.url).to.equal(url);
      expect((await raw(fake, 'GET', `${UTIL}/aliases`)).status).to.equal(200);
    });

    it('refuseSetItem makes set_item answer failed with that validation until cleared', async function () {
      const uuid = fake.uuidOf('bans_host') ?? '';
      fake.refuseSetItem('Entry "legacy" is not a valid hostname, IP address or range.');
      expect((await post(fake, `${ALIAS}/set_item/${uuid}`, { alias: { content: '1.1.1.1' } })).json).to.deep.equal({
        result: 'failed',
        validations: { 'alias.content': 'Entry "legacy" is not a valid hostname, IP address or range.' },
      });
      expect(fake.configContent('bans_host')).to.deep.equal(['10.0.0.1']);
      fake.refuseSetItem(null);
      expect((await post(fake, `${ALIAS}/set_item/${uuid}`, { alias: { content: '1.1.1.1' } })).json).to.deep.equal({ result: 'saved' });
    });

    it('pathPrefix serves the API under that path only, like a reverse proxy', async function () {
      const proxied = await startFakeOpnsense({ pathPrefix: '/fw1/' });
      try {
        expect(proxied.url).to.match(/^https:\/\/127\.0\.0\.1:\d+\/fw1$/);
        expect((await raw(proxied, 'GET', `${proxied.url}${UTIL}/aliases`)).status).to.equal(200);
        expect((await raw(proxied, 'GET', `${UTIL}/aliases`)).status).to.equal(404);
      } finally {
        await proxied.close();
      }
    });

    it('failNext and setFailing answer 5xx before anything else', async function () {
      fake.failNext(2);
      for (let i = 0; i < 2; i += 1) {
        const failed = await raw(fake, 'GET', `${UTIL}/aliases`, { key: null });
        expect(failed.status).to.equal(500);
        expect(failed.json).to.deep.equal({ errorMessage: 'Unexpected error, check log for details' });
      }
      expect((await raw(fake, 'GET', `${UTIL}/aliases`)).status).to.equal(200);
      fake.setFailing(503);
      const unavailable = await raw(fake, 'GET', `${UTIL}/aliases`);
      expect(unavailable.status).to.equal(503);
      expect(unavailable.contentType).to.equal('text/html');
      fake.setFailing(null);
      expect((await raw(fake, 'GET', `${UTIL}/aliases`)).status).to.equal(200);
    });

    it('setLatency delays answers; counters see concurrency, endpoints and connections', async function () {
      // Five connections opened first, so that the five delayed requests arrive together even
      // on a loaded machine (TLS handshakes there can outlast the latency).
      const five = new https.Agent({ keepAlive: true, maxSockets: 5 });
      try {
        await Promise.all(Array.from({ length: 5 }, () => raw(fake, 'GET', `${UTIL}/aliases`, { agent: five })));
        expect(fake.requests.connections).to.equal(5);
        fake.resetCounters();
        fake.setLatency(1_000);
        const started = Date.now();
        await Promise.all(Array.from({ length: 5 }, () => raw(fake, 'GET', `${UTIL}/list/bans_ext`, { agent: five })));
        expect(Date.now() - started, 'answered after the latency').to.be.at.least(1_000);
      } finally {
        five.destroy();
      }
      expect(fake.requests.maxInFlight).to.equal(5);
      expect(fake.requests.inFlight).to.equal(0);
      expect(fake.requests.byEndpoint['firewall/alias_util/list']).to.equal(5);
      expect(fake.requests.connections, 'the kept-alive connections').to.equal(0);

      fake.setLatency(0);
      fake.resetCounters();
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let i = 0; i < 10; i += 1) await raw(fake, 'GET', `${UTIL}/aliases`, { agent });
      } finally {
        agent.destroy();
      }
      expect(fake.requests.total).to.equal(10);
      expect(fake.requests.connections).to.equal(1);
      expect(fake.requests.log[0]).to.include({ method: 'GET', path: `${UTIL}/aliases`, endpoint: 'firewall/alias_util/aliases', status: 200 });
    });
  });
});
