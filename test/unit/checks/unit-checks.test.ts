import { expect } from 'chai';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkServiceUnit } from '../../../agent/checks/unit-checks.js';
import { ORIGINAL_UNIT } from '../../support/original-install.js';

const OURS = '[Unit]\nDescription=syncfail2ban\n[Service]\nExecStart=/usr/bin/syncfail2ban --config /etc/syncfail2ban/config.cfg\n';

describe('--check: the syncfail2ban.service systemd would run', () => {
  let dir: string;
  let etc: string;
  let lib: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-units-'));
    [etc, lib] = [join(dir, 'etc'), join(dir, 'lib')];
    await Promise.all([mkdir(etc), mkdir(lib)]);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('says nothing where no unit is installed (a checkout)', async () => {
    expect(await checkServiceUnit([etc, lib])).to.deep.equal([]);
  });

  it("passes with the package's unit alone", async () => {
    await writeFile(join(lib, 'syncfail2ban.service'), OURS);
    expect(await checkServiceUnit([etc, lib])).to.deep.equal([{ level: 'ok', subject: 'unit syncfail2ban.service', message: `${lib}/syncfail2ban.service runs /usr/bin/syncfail2ban` }]);
  });

  it("fails when the original's unit in /etc hides ours, naming both and the fix", async () => {
    await writeFile(join(lib, 'syncfail2ban.service'), OURS);
    await writeFile(join(etc, 'syncfail2ban.service'), ORIGINAL_UNIT);
    const [finding, ...rest] = await checkServiceUnit([etc, lib]);
    expect(rest).to.deep.equal([]);
    expect(finding!.level).to.equal('fail');
    expect(finding!.message).to.equal(`${etc}/syncfail2ban.service runs /etc/syncfail2ban/syncfail2ban, not syncfail2ban's program, and hides ${lib}/syncfail2ban.service (the original's unit?)`);
    expect(finding!.fix).to.equal(`mv ${etc}/syncfail2ban.service ${etc}/syncfail2ban.service.orig && systemctl daemon-reload; change the service with "systemctl edit syncfail2ban.service" instead`);
  });

  it('warns when a full copy of ours hides the one upgrades change', async () => {
    await writeFile(join(lib, 'syncfail2ban.service'), OURS);
    await writeFile(join(etc, 'syncfail2ban.service'), OURS.replace('/usr/bin/', '/usr/local/bin/'));
    const [finding] = await checkServiceUnit([etc, lib]);
    expect(finding!.level).to.equal('warn');
    expect(finding!.message).to.match(new RegExp(`^${etc}/syncfail2ban.service hides ${lib}/syncfail2ban.service: upgrades change the hidden one`));
  });

  it('sees one unit where /lib is a link to /usr/lib (merged /usr)', async () => {
    const usrLib = join(dir, 'usr-lib');
    await mkdir(usrLib);
    await writeFile(join(usrLib, 'syncfail2ban.service'), OURS);
    await rm(lib, { recursive: true });
    await symlink(usrLib, lib);
    expect(await checkServiceUnit([etc, lib, usrLib])).to.deep.equal([{ level: 'ok', subject: 'unit syncfail2ban.service', message: `${lib}/syncfail2ban.service runs /usr/bin/syncfail2ban` }]);
  });

  it('warns when the unit is masked', async () => {
    await writeFile(join(lib, 'syncfail2ban.service'), OURS);
    await symlink('/dev/null', join(etc, 'syncfail2ban.service'));
    const [finding] = await checkServiceUnit([etc, lib]);
    expect(finding).to.deep.equal({ level: 'warn', subject: 'unit syncfail2ban.service', message: `${etc}/syncfail2ban.service masks it: systemd will not start syncfail2ban`, fix: 'systemctl unmask syncfail2ban.service' });
  });
});
