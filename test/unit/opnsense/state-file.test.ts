import { expect } from 'chai';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FirewallLedger } from '../../../agent/sinks/opnsense/ledger.js';
import { decodeBridgeState, encodeBridgeState, legacyGeneration } from '../../../agent/sinks/opnsense/persisted-state.js';
import { OpnsenseBridge } from '../../../agent/sinks/opnsense/bridge.js';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { parseConfig } from '../../../src/config.js';
import { captureLog } from '../../support/capture-log.js';

describe('bridge state file', function () {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-state-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A bridge on an unreachable firewall: enough to load and save its state. */
  function bridgeOn(stateDir: string) {
    const config = parseConfig(['opn_fw_sync = true', 'opn_fw_ip = 192.0.2.1', `state_dir = ${stateDir}`, '[opn_aliases]', 'sshd = bans', '[opn_keys]', '192.0.2.1_key = k', '192.0.2.1_secret = s'].join('\n'), 'test.cfg');
    const captured = captureLog();
    return { bridge: new OpnsenseBridge(config.opnsense, config.stateDir, new Holdings(), captured.log, { pick: (real) => real, stateWriteDelayMs: 60_000 }), ...captured };
  }

  it('round-trips the ledger as one line, and reads the holders of a file written before the holdings store (for adoption), skipping entries that are not canonical', async () => {
    const ledger = new FirewallLedger('https://192.0.2.1');
    ledger.add('bans', '203.0.113.1');
    const text = encodeBridgeState([ledger]);
    expect(text.endsWith('\n') && text.indexOf('\n') === text.length - 1, 'one line').to.equal(true);
    const json = JSON.parse(text) as Record<string, unknown>;
    expect(json).to.not.have.property('wanted');
    json.wanted = { bans: { '203.0.113.1': ['host-a/sshd'], '2001:db8::1': ['@manual/sshd'], '2001:DB8::2': ['host-a/sshd'] } };
    const decoded = decodeBridgeState(json);
    expect(decoded.wanted).to.deep.equal([
      ['bans', '203.0.113.1', 'host-a/sshd'],
      ['bans', '2001:db8::1', '@manual/sshd'],
    ]);
    expect(decoded.added).to.deep.equal([['https://192.0.2.1', 'bans', '203.0.113.1']]);
    expect(decoded.skipped).to.equal(1);
  });

  it('reads the generation files of earlier versions kept in their JSON', () => {
    expect(legacyGeneration(JSON.stringify({ version: 1, generation: 12, added: {} }))).to.equal(12);
    expect(legacyGeneration(JSON.stringify({ version: 1, wanted: {}, added: {} }))).to.equal(0);
  });

  it('moves a corrupt file aside with a loud error and starts empty', async () => {
    await writeFile(join(dir, 'opnsense-bridge.json'), '{"version":1,"wanted":{"bans":');
    const { bridge, lines } = bridgeOn(dir);
    await bridge.start();
    await bridge.stop();
    const error = lines.find((line) => line.level === 50 && /corrupt/.test(String(line.msg)));
    expect(error?.msg).to.match(/opnsense-bridge\.json is not a valid snapshot of the OPNsense bridge state .*moved it to .*opnsense-bridge\.json\.corrupt-.*started without it.*syncfail2ban-client -f/);
    const names = await readdir(dir);
    const aside = names.find((name) => name.startsWith('opnsense-bridge.json.corrupt-'));
    expect(await readFile(join(dir, aside!), 'utf8'), 'the bad file is kept as it was').to.equal('{"version":1,"wanted":{"bans":');
  });

  it('runs without saving, and says so in the log and status, when state_dir cannot be created', async () => {
    await writeFile(join(dir, 'a-file'), '');
    const { bridge, lines } = bridgeOn(join(dir, 'a-file', 'state'));
    await bridge.start();
    expect(lines.find((line) => line.level === 50)?.msg).to.match(/cannot keep the OPNsense bridge state in .*runs without saving its state.*set state_dir to a directory this user may write/);
    expect(bridge.status().details).to.include({ persistent: false });
    expect(bridge.status().problems[0]?.what).to.match(/the bridge state cannot be saved/);
    await bridge.stop();
  });

  it('refuses to start, naming the file and the fix, when its journal is not a file', async () => {
    await mkdir(join(dir, 'opnsense-bridge.json.journal', 'x'), { recursive: true });
    const { bridge } = bridgeOn(dir);
    let caught: Error | undefined;
    await bridge.start().catch((error: Error) => (caught = error));
    expect(caught?.name).to.equal('ConfigError');
    expect(caught?.message).to.equal(
      `state_dir: ${join(dir, 'opnsense-bridge.json.journal')} is a directory, where syncfail2ban keeps a file of its own: it was not made by syncfail2ban; fix: remove it (rm -r ${join(dir, 'opnsense-bridge.json.journal')}; look first at what made it), then start again`,
    );
    await bridge.stop();
  });
});
