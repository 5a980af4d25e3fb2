/** The firewall probe of `syncfail2ban --check` (issue 12, item 7), against the fake. */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkFirewalls } from '../../agent/checks/firewall-checks.js';
import type { OpnsenseConfig } from '../../src/config.js';
import { startFakeOpnsense, type FakeApiKey, type FakeOpnsense } from '../fakes/opnsense.js';
import { BIN } from '../support/paths.js';
import { freePort } from '../support/ports.js';
import { run } from '../support/run.js';
import { entryOf } from './fleet.js';

const FULL: FakeApiKey = { key: 'probe-full', secret: 'probe-full-secret', privileges: ['alias_util', 'aliases', 'diagnostics'] };
const UTIL_ONLY: FakeApiKey = { key: 'probe-util', secret: 'probe-util-secret', privileges: ['alias_util'] };
const READ_ONLY: FakeApiKey = { key: 'probe-ro', secret: 'probe-ro-secret', privileges: ['alias_util', 'aliases', 'readonly'] };

const probeFirewalls = (config: OpnsenseConfig) => checkFirewalls(config, 5_000);

describe('syncfail2ban --check: the OPNsense probe', function () {
  this.timeout(60_000);
  let fake: FakeOpnsense;

  beforeEach(async () => {
    fake = await startFakeOpnsense({
      keys: [FULL, UTIL_ONLY, READ_ONLY],
      aliases: [
        { name: 'bans', type: 'external' },
        { name: 'geo', type: 'geoip' },
        { name: 'aging', type: 'external', expire: 600 },
      ],
    });
  });

  afterEach(async () => {
    await fake.close();
  });

  function config(key: FakeApiKey, aliases: string[], options: { killStates?: boolean; secret?: string; caFile?: string | null; baseUrl?: string } = {}): OpnsenseConfig {
    const caFile = options.caFile === undefined ? fake.caCertPath! : options.caFile;
    return {
      enabled: true,
      firewalls: [{ name: entryOf(fake), baseUrl: options.baseUrl ?? fake.url, key: key.key, secret: options.secret ?? key.secret }],
      verifyTls: true,
      ...(caFile === null ? {} : { ca: readFileSync(caFile) }),
      aliases: new Map(aliases.map((alias, i) => [`jail${i}`, alias])),
      reconcileIntervalS: 300,
      killStates: options.killStates ?? false,
    };
  }

  it('reports each mapped alias (usable, refused, with a caveat, missing) and each privilege the features need', async () => {
    const findings = await probeFirewalls(config(FULL, ['bans', 'geo', 'aging', 'nope'], { killStates: true }));
    const text = findings.map((finding) => `${finding.level} ${finding.message}`);
    expect(text[0]).to.match(/^ok answers \(TLS verified\); the API key is accepted/);
    expect(text).to.include('ok alias "bans" is an enabled External (advanced) alias');
    expect(text.find((line) => line.includes('"geo"'))).to.match(/^fail .*has type "geoip", which does not keep what is added/);
    expect(text.find((line) => line.includes('"aging"'))).to.match(/^warn .*expire = 600 s/);
    expect(text.find((line) => line.includes('"nope"'))).to.match(/^fail .*does not exist on the firewall/);
    expect(text).to.include('ok the API user may change aliases (not read-only)');
    expect(text).to.include('ok the API user may kill states (opn_kill_states)');
    expect(fake.pfTable('bans'), 'nothing changed on the firewall').to.deep.equal([]);
  });

  it('names the missing privileges on 403: states, and reading alias config', async () => {
    const findings = await probeFirewalls(config(UTIL_ONLY, ['bans', 'nope'], { killStates: true }));
    const states = findings.find((finding) => /kill-states/.test(finding.message));
    expect(states).to.include({ level: 'fail' });
    expect(states?.message).to.match(/lacks a privilege .*grant "Diagnostics: Show States" \(api\/diagnostics\/firewall\/kill_states\*/);
    const unread = findings.find((finding) => finding.message.includes('"bans"'));
    expect(unread).to.include({ level: 'warn' });
    expect(unread?.fix).to.match(/grant "Firewall: Aliases"/);
    expect(findings.find((finding) => finding.message.includes('"nope"'))).to.include({ level: 'fail' });
  });

  it('fails on a read-only user, wrong credentials, an unverifiable certificate and an unreachable firewall, each with its fix', async () => {
    const readOnly = await probeFirewalls(config(READ_ONLY, ['bans']));
    expect(readOnly.find((finding) => finding.level === 'fail')?.message).to.match(/read-only/);

    const [auth] = await probeFirewalls(config(FULL, ['bans'], { secret: 'wrong' }));
    expect(auth).to.include({ level: 'fail' });
    expect(auth?.message).to.match(/authentication failed .*check the API key and secret/);

    const [tls] = await probeFirewalls(config(FULL, ['bans'], { caFile: null }));
    expect(tls?.message).to.match(/TLS certificate could not be verified .*set the CA file/);

    const port = await freePort('127.0.0.1');
    const [down] = await probeFirewalls(config(FULL, ['bans'], { baseUrl: `https://127.0.0.1:${port}` }));
    expect(down?.message).to.match(/cannot reach the firewall/);
  });

  it('runs from syncfail2ban --check, which fails while a privilege is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sf2b-probe-'));
    try {
      const file = join(dir, 'bridge.cfg');
      const lines = [
        'node_id = probe',
        'mq_ip = 127.0.0.1',
        'f2b_sync = false',
        'opn_fw_sync = true',
        `opn_fw_ip = ${entryOf(fake)}`,
        `opn_ca_file = ${fake.caCertPath}`,
        'opn_kill_states = true',
        `state_dir = ${dir}`,
        '[jails]',
        '[opn_aliases]',
        'sshd = bans',
        '[opn_keys]',
        `${entryOf(fake)}_key = ${UTIL_ONLY.key}`,
        `${entryOf(fake)}_secret = ${UTIL_ONLY.secret}`,
      ];
      await writeFile(file, `${lines.join('\n')}\n`);
      const result = await run(process.execPath, [BIN.agent, '--config', file, '--check']);
      expect(result.code).to.equal(1);
      expect(result.stdout).to.match(/FAIL {2}OPNsense https:\/\/127\.0\.0\.1:\d+: .*"Diagnostics: Show States"/);
      expect(result.stdout).to.not.include(UTIL_ONLY.secret);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
