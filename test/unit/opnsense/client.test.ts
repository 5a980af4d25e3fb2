/** OpnsenseClient against the fake OPNsense: round trips, every error kind, TLS, connection reuse. */
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { OpnsenseClient, OpnsenseError, pfRendering, type OpnsenseClientOptions, type OpnsenseErrorKind } from '../../../agent/sinks/opnsense/api/client.js';
import { startFakeOpnsense, type FakeApiKey, type FakeOpnsense } from '../../fakes/opnsense.js';

const ADMIN: FakeApiKey = { key: 'KEY-c0ffee-must-not-leak', secret: 'SECRET-d00d-must-not-leak', privileges: ['alias_util', 'alias', 'diagnostics'] };
const UTIL_ONLY: FakeApiKey = { key: 'KEY-util-only', secret: 'SECRET-util-only', privileges: ['alias_util'] };
const ALIAS_ONLY: FakeApiKey = { key: 'KEY-alias-only', secret: 'SECRET-alias-only', privileges: ['alias'] };
const READ_ONLY: FakeApiKey = { key: 'KEY-read-only', secret: 'SECRET-read-only', privileges: ['alias_util', 'alias', 'readonly'] };
const WRONG_SECRET = 'SECRET-wrong-must-not-leak';

/** Every form in which a credential could leak into an error. */
function leaks(key: { key: string; secret: string }): string[] {
  return [key.key, key.secret, Buffer.from(`${key.key}:${key.secret}`).toString('base64')];
}

function expectNoCredentials(error: Error, extra: string[] = []): void {
  const shown = [error.message, String(error.stack), inspect(error, { depth: 10 }), JSON.stringify(error)].join('\n');
  for (const key of [ADMIN, UTIL_ONLY, ALIAS_ONLY, READ_ONLY]) {
    for (const secret of leaks(key)) expect(shown, 'error output').to.not.contain(secret);
  }
  for (const secret of extra) expect(shown, 'error output').to.not.contain(secret);
}

async function failure(promise: Promise<unknown>, kind: OpnsenseErrorKind): Promise<OpnsenseError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected an OpnsenseError of kind ${kind}`).to.be.instanceOf(OpnsenseError);
  const error = caught as OpnsenseError;
  expect(error.kind, error.message).to.equal(kind);
  expectNoCredentials(error, [WRONG_SECRET]);
  return error;
}

describe('OpnsenseClient', function () {
  let fake: FakeOpnsense;
  let clients: OpnsenseClient[] = [];

  function client(overrides: Partial<OpnsenseClientOptions> & { as?: FakeApiKey } = {}): OpnsenseClient {
    const { as = ADMIN, ...rest } = overrides;
    const created = new OpnsenseClient({
      baseUrl: fake.url,
      key: as.key,
      secret: as.secret,
      verifyTls: true,
      ...(fake.caCertPath === undefined ? {} : { ca: readFileSync(fake.caCertPath) }),
      timeoutMs: 5_000,
      ...rest,
    });
    clients.push(created);
    return created;
  }

  beforeEach(async function () {
    fake = await startFakeOpnsense({
      keys: [ADMIN, UTIL_ONLY, ALIAS_ONLY, READ_ONLY],
      aliases: [
        { name: 'bans_host', type: 'host', content: ['10.0.0.1'] },
        { name: 'bans_net', type: 'network' },
        { name: 'bans_ext', type: 'external' },
      ],
    });
  });

  afterEach(async function () {
    for (const c of clients) c.close();
    clients = [];
    await fake.close();
  });

  describe('pfRendering', function () {
    it('strips single-host masks and lowercases and compresses IPv6', function () {
      expect(pfRendering('1.2.3.4/32')).to.equal('1.2.3.4');
      expect(pfRendering(' 1.2.3.4 ')).to.equal('1.2.3.4');
      expect(pfRendering('10.0.0.0/8')).to.equal('10.0.0.0/8');
      expect(pfRendering('2001:DB8::1/128')).to.equal('2001:db8::1');
      expect(pfRendering('2001:0db8:0000:0000:0000:0000:0000:0001')).to.equal('2001:db8::1');
      expect(pfRendering('2001:db8::/32')).to.equal('2001:db8::/32');
    });
  });

  describe('round trips', function () {
    it('adds, lists and deletes on an external alias (pf only), in pf rendering', async function () {
      const opn = client();
      await opn.add('bans_ext', '1.2.3.4');
      await opn.add('bans_ext', '2001:DB8::1');
      await opn.add('bans_ext', '5.6.7.8/32');
      expect(await opn.list('bans_ext')).to.deep.equal(['1.2.3.4', '2001:db8::1', '5.6.7.8']);
      expect(fake.configContent('bans_ext')).to.deep.equal([]);
      // Delete must match pf's rendering: the client strips the /32 the caller passed.
      await opn.delete('bans_ext', '5.6.7.8/32');
      await opn.delete('bans_ext', '2001:db8::1/128');
      expect(await opn.list('bans_ext')).to.deep.equal(['1.2.3.4']);
      await opn.delete('bans_ext', '1.2.3.4');
      expect(await opn.list('bans_ext')).to.deep.equal([]);
    });

    it('adds and deletes on host and network aliases, config and pf alike', async function () {
      const opn = client();
      await opn.add('bans_host', '1.2.3.4');
      await opn.add('bans_net', '5.6.7.8');
      expect(await opn.list('bans_host')).to.deep.equal(['10.0.0.1', '1.2.3.4']);
      expect(fake.configContent('bans_net')).to.deep.equal(['5.6.7.8/32']);
      expect(await opn.list('bans_net')).to.deep.equal(['5.6.7.8']);
      await opn.delete('bans_host', '1.2.3.4/32');
      await opn.delete('bans_net', '5.6.7.8/32');
      expect(await opn.list('bans_host')).to.deep.equal(['10.0.0.1']);
      expect(fake.configContent('bans_host')).to.deep.equal(['10.0.0.1']);
      expect(await opn.list('bans_net')).to.deep.equal([]);
      expect(fake.configContent('bans_net')).to.deep.equal([]);
    });

    it('lists 12,000 entries in full, with rowCount=-1 or by following 9,999-row pages', async function () {
      const many = Array.from({ length: 12_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      fake.setPfTable('bans_ext', many);
      const opn = client();
      fake.resetCounters();
      expect(await opn.list('bans_ext')).to.deep.equal(many);
      expect(fake.requests.byEndpoint['firewall/alias_util/list']).to.equal(1);
      expect(JSON.parse(fake.requests.log[0]?.body ?? '{}')).to.deep.equal({ current: 1, rowCount: -1 });

      fake.capListPage(9_999);
      fake.resetCounters();
      expect(await opn.list('bans_ext')).to.deep.equal(many);
      expect(fake.requests.byEndpoint['firewall/alias_util/list']).to.equal(2);
    });

    it('lists an unknown table as empty, and reads UUIDs and states', async function () {
      const opn = client();
      expect(await opn.list('no_such_table')).to.deep.equal([]);
      expect(await opn.getAliasUuid('bans_host')).to.equal(fake.uuidOf('bans_host'));
      expect(await opn.getAliasUuid('missing')).to.equal(null);
      fake.addStates('1.2.3.4', 4);
      expect(await opn.killStates('1.2.3.4/32')).to.equal(4);
      expect(await opn.killStates('1.2.3.4')).to.equal(0);
    });

    it('replaces host alias content in bulk: set_item then reconfigure', async function () {
      const opn = client();
      const uuid = await opn.getAliasUuid('bans_host');
      await opn.setAliasContent(uuid ?? '', ['1.1.1.1', '2.2.2.2', '3.3.3.3'], 'bans_host');
      await opn.reconfigure();
      expect(fake.configContent('bans_host')).to.deep.equal(['1.1.1.1', '2.2.2.2', '3.3.3.3']);
      expect(await opn.list('bans_host')).to.deep.equal(['1.1.1.1', '2.2.2.2', '3.3.3.3']);
      const item = await opn.getAliasItem(fake.uuidOf('bans_host') ?? '', 'bans_host');
      expect(item).to.deep.equal({ name: 'bans_host', type: 'host', enabled: true, expire: null, content: ['1.1.1.1', '2.2.2.2', '3.3.3.3'] });
      expect(await opn.getAliasItem('00000000-0000-0000-0000-000000000000')).to.equal(null);
    });

    it('sends no JSON content type on body-less requests', async function () {
      const opn = client();
      fake.resetCounters();
      await opn.reconfigure();
      await opn.getAliasUuid('bans_ext');
      expect(fake.requests.log.map((r) => [r.method, r.contentType, r.status])).to.deep.equal([
        ['POST', undefined, 200],
        ['GET', undefined, 200],
      ]);
    });
  });

  describe('errors', function () {
    it('auth: a wrong secret', async function () {
      const opn = client({ as: { ...ADMIN, secret: WRONG_SECRET } });
      const error = await failure(opn.add('bans_ext', '1.2.3.4'), 'auth');
      expect(error.httpStatus).to.equal(401);
      expect(error.message).to.contain(fake.url).and.to.contain('"bans_ext"').and.to.contain('key and secret');
      expect(error.firewall).to.equal(fake.url);
      expect(error.alias).to.equal('bans_ext');
    });

    it('forbidden: names the privilege each API needs', async function () {
      const aliasOnly = client({ as: ALIAS_ONLY });
      const utilOnly = client({ as: UTIL_ONLY });
      const util = await failure(aliasOnly.add('bans_ext', '1.2.3.4'), 'forbidden');
      expect(util.message).to.contain('Diagnostics: PF Table IP addresses').and.to.contain(fake.url).and.to.contain('bans_ext');
      const alias = await failure(utilOnly.getAliasUuid('bans_host'), 'forbidden');
      expect(alias.message).to.contain('Firewall: Alias: Edit').and.to.contain('bans_host');
      const states = await failure(utilOnly.killStates('1.2.3.4'), 'forbidden');
      expect(states.message).to.contain('States').and.to.contain('diagnostics');
    });

    it('bad_request: HTTP 400', async function () {
      fake.failNext(1, 400);
      const error = await failure(client().add('bans_ext', '1.2.3.4'), 'bad_request');
      expect(error.message).to.contain('Invalid JSON syntax').and.to.contain(fake.url);
    });

    it('not_found: a base URL with a wrong path', async function () {
      const error = await failure(client({ baseUrl: `${fake.url}/opnsense` }).list('bans_ext'), 'not_found');
      expect(error.message).to.contain(`${fake.url}/opnsense`).and.to.contain('/api/firewall/alias_util/list/bans_ext').and.to.contain('base URL');
    });

    it('server: 5xx, with or without a JSON body', async function () {
      const opn = client();
      fake.failNext(1, 500);
      const json = await failure(opn.add('bans_ext', '1.2.3.4'), 'server');
      expect(json.message).to.contain('Unexpected error').and.to.contain('bans_ext').and.to.contain(fake.url);
      fake.setFailing(503);
      const html = await failure(opn.list('bans_ext'), 'server');
      expect(html.httpStatus).to.equal(503);
      expect(html.message).to.contain('503 Service Unavailable').and.not.to.contain('<h1>');
      fake.setFailing(null);
      await opn.add('bans_ext', '1.2.3.4');
    });

    it('server: a 500 for content a host alias rejects hints at the alias type', async function () {
      const error = await failure(client().add('bans_host', '1.2.3.0/24'), 'server');
      expect(error.message).to.contain('Host(s)').and.to.contain('"bans_host"');
    });

    it('server: a read-only API user is reported as such and not retried', async function () {
      const error = await failure(client({ as: READ_ONLY }).delete('bans_ext', '1.2.3.4'), 'server');
      expect(error.message).to.contain('read-only').and.to.contain(fake.url).and.to.contain('bans_ext');
    });

    it('failed: set_item validations are reported', async function () {
      const opn = client();
      const uuid = fake.uuidOf('bans_host') ?? '';
      const error = await failure(opn.setAliasContent(uuid, ['1.1.1.1', '999.1.1.1'], 'bans_host'), 'failed');
      expect(error.message).to.contain('999.1.1.1').and.to.contain('"bans_host"');
    });

    it('not_an_address: characters OPNsense refuses', async function () {
      const error = await failure(client().add('bans_ext', '1.2.3.4,5.6.7.8'), 'not_an_address');
      expect(error.message).to.contain('"1.2.3.4,5.6.7.8"').and.to.contain('bans_ext');
      await failure(client().killStates(' '), 'not_an_address');
    });

    it('nonexistent_alias: says to create the alias', async function () {
      const error = await failure(client().add('Bans_Ext', '1.2.3.4'), 'nonexistent_alias');
      expect(error.message).to.contain('create the alias Bans_Ext').and.to.contain(fake.url);
      expect(error.alias).to.equal('Bans_Ext');
    });

    it('bad_response: a 200 that is not the OPNsense API', async function () {
      const impostor = http.createServer((_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/html' });
        res.end('<html>captive portal</html>');
      });
      await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
      try {
        const port = (impostor.address() as AddressInfo).port;
        const opn = client({ baseUrl: `http://127.0.0.1:${port}` });
        const error = await failure(opn.add('bans_ext', '1.2.3.4'), 'bad_response');
        expect(error.message).to.contain('not JSON').and.to.contain('captive portal');
        opn.close();
      } finally {
        impostor.closeAllConnections();
        await new Promise((resolve) => impostor.close(resolve));
      }
    });

    it('unreachable: a down firewall, and the client recovers when it is back', async function () {
      const opn = client();
      await opn.add('bans_ext', '1.2.3.4');
      await fake.setDown(true);
      const refused = await failure(opn.add('bans_ext', '5.6.7.8'), 'unreachable');
      expect(refused.message).to.contain(fake.url).and.to.contain('ECONNREFUSED').and.to.contain('bans_ext');
      await fake.setDown(true, 'reset');
      await failure(opn.add('bans_ext', '5.6.7.8'), 'unreachable');
      await fake.setDown(false);
      await opn.add('bans_ext', '5.6.7.8');
      expect(fake.pfTable('bans_ext')).to.deep.equal(['1.2.3.4', '5.6.7.8']);
    });

    it('unreachable: a firewall that does not answer in time', async function () {
      fake.setLatency(2_000);
      const error = await failure(client({ timeoutMs: 150 }).add('bans_ext', '1.2.3.4'), 'unreachable');
      expect(error.message).to.contain('150 ms').and.to.contain(fake.url);
    });

    it('gives a listing its own, longer timeout, and a listing that outlasts it is no "unreachable" firewall', async function () {
      fake.setLatency(300);
      expect(await client({ timeoutMs: 150 }).list('bans_ext'), 'a list may take longer than other calls').to.deep.equal([]);
      const error = await failure(client({ timeoutMs: 150, listTimeoutMs: 200 }).list('bans_ext'), 'server');
      expect(error.message).to.contain('did not finish the listing within 200 ms').and.to.contain('whole pf table');
    });

  });

  describe('TLS', function () {
    it('works with the pinned CA, and with verification knowingly disabled', async function () {
      await client().add('bans_ext', '1.2.3.4');
      const insecure = new OpnsenseClient({ baseUrl: fake.url, key: ADMIN.key, secret: ADMIN.secret, verifyTls: false });
      clients.push(insecure);
      expect(await insecure.list('bans_ext')).to.deep.equal(['1.2.3.4']);
    });

    it('fails with a clear unreachable error for a wrong CA or no CA', async function () {
      const other = await startFakeOpnsense();
      try {
        const wrong = await failure(client({ ca: readFileSync(other.caCertPath!) }).add('bans_ext', '1.2.3.4'), 'unreachable');
        expect(wrong.message).to.contain('TLS certificate could not be verified').and.to.contain('CA file').and.to.contain(fake.url);
      } finally {
        await other.close();
      }
      const systemCas = new OpnsenseClient({ baseUrl: fake.url, key: ADMIN.key, secret: ADMIN.secret, verifyTls: true });
      clients.push(systemCas);
      const none = await failure(systemCas.list('bans_ext'), 'unreachable');
      expect(none.message).to.contain('CA file');
      expect(fake.pfTable('bans_ext')).to.deep.equal([]);
    });

    it('says so when an https:// URL points at a plain-HTTP port', async function () {
      const plain = await startFakeOpnsense({ tls: false, keys: [ADMIN], aliases: [{ name: 'bans_ext', type: 'external' }] });
      try {
        const error = await failure(client({ baseUrl: plain.url.replace('http:', 'https:') }).list('bans_ext'), 'unreachable');
        expect(error.message).to.contain('TLS handshake failed');
        const works = client({ baseUrl: plain.url });
        await works.add('bans_ext', '1.2.3.4');
        expect(plain.pfTable('bans_ext')).to.deep.equal(['1.2.3.4']);
      } finally {
        await plain.close();
      }
    });
  });

  describe('connections', function () {
    it('reuses kept-alive connections for sequential calls', async function () {
      const opn = client();
      fake.resetCounters();
      for (let i = 0; i < 40; i += 1) await opn.add('bans_ext', `192.0.2.${i}`);
      expect(await opn.list('bans_ext')).to.have.length(40);
      expect(fake.requests.total).to.equal(41);
      expect(fake.requests.connections).to.equal(1);
    });

    it('never exceeds maxSockets concurrent requests or connections', async function () {
      const opn = client({ maxSockets: 3 });
      fake.resetCounters();
      fake.setLatency(30);
      await Promise.all(Array.from({ length: 20 }, (_, i) => opn.add('bans_ext', `198.51.100.${i}`)));
      expect(fake.pfTable('bans_ext')).to.have.length(20);
      expect(fake.requests.maxInFlight).to.equal(3);
      expect(fake.requests.connections).to.be.at.most(3);
    });
  });
});
