import { expect } from 'chai';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkNftables } from '../../agent/checks/nftables-checks.js';
import { Nft } from '../../agent/sinks/nftables/nft.js';
import { parseConfig } from '../../src/config.js';
import { NetNamespace } from '../support/netns.js';

const SUBJECT = 'nftables (table inet syncfail2ban)';
const config = (lines: string) => parseConfig(`${lines}\n[jails]\nsshd = sshd-sync\n`, 'check.cfg');

describe('--check on nftables (real nft in a network namespace)', function () {
  this.timeout(30_000);
  let ns: NetNamespace;
  let dir: string;
  let nft: Nft;
  /** A systemctl that answers `show` as systemd would for the installed unit. */
  let systemctl: (properties: string) => Promise<string>;

  beforeEach(async () => {
    ns = await NetNamespace.create();
    dir = await mkdtemp(join(tmpdir(), 'sf2b-nft-check-'));
    nft = new Nft({ command: [...ns.prefix(), 'nft'] });
    systemctl = async (properties) => {
      const path = join(dir, 'systemctl');
      await writeFile(path, `#!/bin/sh\nprintf '%s\\n' ${properties.split('\n').map((line) => `'${line}'`).join(' ')}\n`);
      await chmod(path, 0o755);
      return path;
    };
  });
  afterEach(async () => {
    await ns.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('with nft_sync on: nft can build the table but it does not exist yet, then it exists as configured', async () => {
    const on = config('nft_sync = true');
    expect(await checkNftables(on, nft, join(dir, 'none'))).to.deep.equal([
      { level: 'warn', subject: SUBJECT, message: 'nft can build it, but it does not exist: no fleet ban is enforced in nftables yet', fix: 'start the agent ("systemctl start syncfail2ban"); it creates the table' },
    ]);
    expect((await ns.must('nft', ['list', 'ruleset'])).trim()).to.equal('');
    await ns.must('nft', ['add', 'table', 'inet', 'syncfail2ban']);
    await ns.must('nft', ['add', 'chain', 'inet', 'syncfail2ban', 'input', '{ type filter hook input priority 0; }']);
    expect(await checkNftables(on, nft, join(dir, 'none'))).to.deep.include({ level: 'ok', subject: SUBJECT, message: 'exists and nft can change it; its chains hook input and drop what the fleet bans' });
    const forward = await checkNftables(config('nft_sync = true\nnft_hook = forward'), nft, join(dir, 'none'));
    expect(forward[0]).to.include({ level: 'warn', message: 'its chains hook input, but nft_hook says forward' });
  });

  it('with nft_sync off: nothing to say, but a table left behind', async () => {
    const off = config('');
    expect(await checkNftables(off, nft)).to.deep.equal([]);
    expect(await checkNftables(off, new Nft({ command: [join(dir, 'no-nft')] }))).to.deep.equal([]);
    await ns.must('nft', ['add', 'table', 'inet', 'syncfail2ban']);
    const [finding] = await checkNftables(off, nft);
    expect(finding).to.include({ level: 'warn', subject: SUBJECT });
    expect(finding!.fix).to.include('syncfail2ban --remove-nft-table');
  });

  it('fails when nft cannot be used, with the fix', async () => {
    const [missing] = await checkNftables(config('nft_sync = true'), new Nft({ command: [join(dir, 'no-nft')] }), join(dir, 'none'));
    expect(missing).to.include({ level: 'fail', subject: SUBJECT });
    expect(missing!.message).to.include('is not installed');
    expect(missing!.fix).to.include('apt-get install nftables');
    const [denied] = await checkNftables(config('nft_sync = true'), new Nft({ command: [...ns.prefix(), 'setpriv', '--bounding-set=-net_admin', '--inh-caps=-net_admin', 'nft'] }), join(dir, 'none'));
    expect(denied).to.include({ level: 'fail' });
    expect(denied!.fix).to.include('CapabilityBoundingSet=CAP_NET_ADMIN');
  });

  it('fails when the systemd unit does not grant CAP_NET_ADMIN, as the shipped one does not', async () => {
    const on = config('nft_sync = true');
    const [bare] = await checkNftables(on, nft, await systemctl('LoadState=loaded\nCapabilityBoundingSet='));
    expect(bare).to.include({ level: 'fail', subject: 'unit syncfail2ban.service' });
    expect(bare!.fix).to.include('CapabilityBoundingSet=CAP_NET_ADMIN');
    const [granted] = await checkNftables(on, nft, await systemctl('LoadState=loaded\nCapabilityBoundingSet=cap_net_admin'));
    expect(granted).to.include({ level: 'ok', subject: 'unit syncfail2ban.service' });
    const [other] = await checkNftables(on, nft, await systemctl('LoadState=not-found\nCapabilityBoundingSet=cap_chown cap_net_admin'));
    expect(other!.subject).to.equal(SUBJECT);
    expect((await checkNftables(config(''), nft, await systemctl('LoadState=loaded\nCapabilityBoundingSet=')))).to.deep.equal([]);
  });
});
