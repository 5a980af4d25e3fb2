import { expect } from 'chai';
import { mkdir, mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jailLocal } from '../support/jail-local.js';
import { ORIGINAL_CONFIG, originalInstallScript } from '../support/original-install.js';
import { ROOT } from '../support/paths.js';
import { run } from '../support/run.js';
import { SystemCopy } from '../support/system-copy.js';

/** `ls -l`-like facts about paths inside the copy: "<path> <mode> <type>" or "<path> absent". */
function describePaths(paths: string[]): string {
  return paths.map((path) => `if [ -e ${path} ] || [ -L ${path} ]; then echo "${path} $(stat -c '%a %F' ${path})"; else echo "${path} absent"; fi`).join('\n');
}

function facts(output: string): Map<string, string> {
  return new Map(output.trim().split('\n').map((line) => {
    const [path, ...rest] = line.split(' ');
    return [path!, rest.join(' ')] as const;
  }));
}

/**
 * The package as an admin uses it, with the real apt-get and dpkg, in a throwaway copy of this
 * machine (test/support/system-copy.ts): over the original's files, and on a fresh host.
 */
describe('the Debian package with apt-get and dpkg, as an admin installs, removes and purges it', function () {
  this.timeout(600_000);
  let tmp: string;
  let deb: string;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'sf2b-apt-'));
    const built = await run('make', ['-s', '-C', ROOT, 'deb', `DEB_DIR=${tmp}`, 'NO_BUILD=1'], 180_000);
    expect(built.code, built.stdout + built.stderr).to.equal(0);
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    deb = join(tmp, `syncfail2ban_${version}_all.deb`);
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  /** A copy of this machine with the package file at /root/syncfail2ban.deb. */
  async function hostWithPackage(): Promise<SystemCopy> {
    const host = await SystemCopy.create();
    await mkdir(host.hostPath('/root'), { recursive: true });
    await copyFile(deb, host.hostPath('/root/syncfail2ban.deb'));
    return host;
  }
  // apt-get names a local file by a path with a slash; no terminal, no answers on stdin.
  const APT_INSTALL = 'cd /root && env -u DEBIAN_FRONTEND apt-get install -y ./syncfail2ban.deb';

  describe('over the original syncfail2ban (its pip package removed, its files still there)', () => {
    let host: SystemCopy;
    before(async () => {
      host = await hostWithPackage();
      const setup = await host.sh(`${originalInstallScript()}\ncat > /etc/fail2ban/jail.local <<'EOF'\n${jailLocal({ syncAction: true })}EOF`);
      expect(setup.code, setup.stderr).to.equal(0);
    });
    after(() => host.remove());

    it('apt-get install -y never prompts, keeps the config, and moves the original unit and client aside', async () => {
      const install = await host.sh(APT_INSTALL);
      expect(install.code, install.stdout + install.stderr).to.equal(0);
      expect(install.stdout).to.include("moved the original's unit /etc/systemd/system/syncfail2ban.service");
      expect(install.stdout).to.include('kept your /etc/syncfail2ban/config.cfg');
      const state = await host.sh([
        "dpkg-query -W -f '${Status}\\n' syncfail2ban",
        'cat /etc/syncfail2ban/config.cfg',
        'echo ---',
        'readlink /etc/systemd/system/multi-user.target.wants/syncfail2ban.service',
        'head -n 2 /etc/syncfail2ban/syncfail2ban-client.orig',
        'grep -c "^exec /usr/bin/node /usr/lib/syncfail2ban/dist/cli/client.bundle.cjs" /etc/syncfail2ban/syncfail2ban-client',
      ].join('\n'));
      const [status, rest] = [state.stdout.split('\n')[0], state.stdout.slice(state.stdout.indexOf('\n') + 1)];
      expect(status).to.equal('install ok installed');
      const [config, after] = rest.split('---\n');
      expect(config).to.equal(ORIGINAL_CONFIG);
      expect(after!.trim().split('\n')).to.deep.equal(['/lib/systemd/system/syncfail2ban.service', '#!/usr/bin/python3', '# the original client', '1']);
      expect(facts((await host.sh(describePaths(['/etc/systemd/system/syncfail2ban.service', '/etc/systemd/system/syncfail2ban.service.orig']))).stdout)).to.deep.equal(
        new Map([
          ['/etc/systemd/system/syncfail2ban.service', 'absent'],
          ['/etc/systemd/system/syncfail2ban.service.orig', '644 regular file'],
        ]),
      );
    });

    it('the installed programs run, and read the original config without a warning', async () => {
      const versions = await host.sh('syncfail2ban --version && syncfail2ban-client --version && syncfail2ban-broker --version');
      expect(versions.code, versions.stderr).to.equal(0);
      expect(versions.stdout).to.match(/^syncfail2ban \S+\nsyncfail2ban-client \S+\nsyncfail2ban-broker \S+\n$/);
      // mq_ip blank, no peers: the config check passes; fail2ban does not run in the copy.
      const check = await host.sh('syncfail2ban --check --config /etc/syncfail2ban/config.cfg');
      expect(check.stdout).to.match(/^ok {4}config: \/etc\/syncfail2ban\/config.cfg is valid/m);
      expect(check.stdout).to.match(/^ok {4}config: log_max_size and log_backup_count .* journald rotates/m);
      expect(check.stdout).not.to.match(/unknown key/);
      // The original's unit no longer hides the package's.
      expect(check.stdout, check.stdout).to.include('ok    unit syncfail2ban.service: /lib/systemd/system/syncfail2ban.service runs /usr/bin/syncfail2ban\n');
    });

    it('dpkg -r refuses while a jail runs sync-action; then dpkg -P removes only what the package created', async () => {
      const refused = await host.sh('dpkg -r syncfail2ban');
      expect(refused.code).not.to.equal(0);
      expect(refused.stdout + refused.stderr).to.include('refusing to uninstall: a fail2ban jail still runs sync-action');
      // dpkg notes the wish to remove it ("deinstall"), but the package stays installed and working.
      expect((await host.sh("dpkg-query -W -f '${Status}' syncfail2ban")).stdout).to.match(/ ok installed$/);
      expect((await host.sh('syncfail2ban-client --version')).code).to.equal(0);

      await writeFile(host.hostPath('/etc/fail2ban/jail.local'), jailLocal({ syncAction: false }));
      // The table nft_sync leaves in place goes with the package, and no other table.
      const remove = await host.sh('nft add table inet syncfail2ban && nft add table inet admins && dpkg -r syncfail2ban && nft list tables');
      expect(remove.code, remove.stdout + remove.stderr).to.equal(0);
      expect(remove.stdout).to.include('removed the nftables table inet syncfail2ban');
      expect(remove.stdout.trim().split('\n').at(-1)).to.equal('table inet admins');
      const purge = await host.sh('dpkg -P syncfail2ban');
      expect(purge.code, purge.stdout + purge.stderr).to.equal(0);
      expect(purge.stdout).to.include('kept /etc/syncfail2ban/config.cfg: it was there before the package was installed');
      const left = facts((await host.sh(describePaths([
        '/etc/syncfail2ban/config.cfg',
        '/etc/syncfail2ban/syncfail2ban',
        '/etc/syncfail2ban/syncfail2ban-client.orig',
        '/etc/syncfail2ban/syncfail2ban-client',
        '/etc/systemd/system/syncfail2ban.service.orig',
        '/etc/systemd/system/multi-user.target.wants/syncfail2ban.service',
        '/etc/fail2ban/action.d/sync-action.conf',
        '/usr/lib/syncfail2ban',
        '/usr/bin/syncfail2ban',
        '/var/lib/syncfail2ban',
      ]))).stdout);
      expect(left).to.deep.equal(new Map([
        ['/etc/syncfail2ban/config.cfg', '644 regular file'],
        ['/etc/syncfail2ban/syncfail2ban', '755 regular file'],
        ['/etc/syncfail2ban/syncfail2ban-client.orig', '755 regular file'],
        ['/etc/syncfail2ban/syncfail2ban-client', 'absent'],
        ['/etc/systemd/system/syncfail2ban.service.orig', '644 regular file'],
        ['/etc/systemd/system/multi-user.target.wants/syncfail2ban.service', 'absent'],
        ['/etc/fail2ban/action.d/sync-action.conf', 'absent'],
        ['/usr/lib/syncfail2ban', 'absent'],
        ['/usr/bin/syncfail2ban', 'absent'],
        ['/var/lib/syncfail2ban', 'absent'],
      ]));
      expect((await host.sh('cat /etc/syncfail2ban/config.cfg')).stdout).to.equal(ORIGINAL_CONFIG);
    });
  });

  describe('on a fresh host', () => {
    let host: SystemCopy;
    before(async () => {
      host = await hostWithPackage();
    });
    after(() => host.remove());

    it('creates the config from the example (root only), keeps the admin\'s changes on a reinstall, and a purge removes what it created', async () => {
      const install = await host.sh(APT_INSTALL);
      expect(install.code, install.stdout + install.stderr).to.equal(0);
      expect(install.stdout).to.include('created /etc/syncfail2ban/config.cfg');
      expect((await host.sh('cat /etc/syncfail2ban/config.cfg')).stdout).to.equal(await readFile(join(ROOT, 'etc/config.cfg'), 'utf8'));
      expect((await host.sh('stat -c %a /etc/syncfail2ban/config.cfg')).stdout.trim()).to.equal('600');

      await writeFile(host.hostPath('/etc/syncfail2ban/config.cfg'), '# mine\nnode_id = mine\n', { mode: 0o600 });
      const again = await host.sh('dpkg -i /root/syncfail2ban.deb');
      expect(again.code, again.stdout + again.stderr).to.equal(0);
      expect((await host.sh('cat /etc/syncfail2ban/config.cfg')).stdout).to.equal('# mine\nnode_id = mine\n');

      const purge = await host.sh('dpkg -P syncfail2ban');
      expect(purge.code, purge.stdout + purge.stderr).to.equal(0);
      expect(purge.stdout).to.include('removed /etc/syncfail2ban/config.cfg (the package created it)');
      const left = facts((await host.sh(describePaths(['/etc/syncfail2ban', '/var/lib/syncfail2ban', '/usr/lib/syncfail2ban', '/lib/systemd/system/syncfail2ban.service']))).stdout);
      expect([...left.values()]).to.deep.equal(['absent', 'absent', 'absent', 'absent']);
    });
  });
});
