import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jailLocal } from '../support/jail-local.js';
import { ROOT } from '../support/paths.js';
import { run, type RunResult } from '../support/run.js';

const execFileAsync = promisify(execFile);
const LIB = '/usr/lib/syncfail2ban';

const exists = (path: string) => access(path).then(() => true, () => false);

/** Runs a maintainer script of the package against a staged root (the scripts honour DESTDIR). */
function maintainerScript(control: string, root: string, script: string, ...args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile('sh', [join(control, script), ...args], { env: { PATH: process.env.PATH, DESTDIR: root } }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr }),
    );
  });
}

describe('make deb: the Debian package', function () {
  this.timeout(240_000);
  let tmp: string;
  let deb: string;
  let version: string;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'sf2b-deb-'));
    const built = await run('make', ['-s', '-C', ROOT, 'deb', `DEB_DIR=${tmp}`, 'NO_BUILD=1', `MODULES_FROM=${join(ROOT, 'node_modules')}`], 180_000);
    expect(built.code, built.stdout + built.stderr).to.equal(0);
    version = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    deb = join(tmp, `syncfail2ban_${version}_all.deb`);
    expect(built.stdout).to.include(`built ${deb}`);
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('its control file: the version of package.json, any architecture, Node.js 20 or newer; config.cfg is a conffile', async () => {
    const field = async (name: string) => (await execFileAsync('dpkg-deb', ['-f', deb, name])).stdout.trim();
    expect(await field('Package')).to.equal('syncfail2ban');
    expect(await field('Version')).to.equal(version);
    expect(await field('Architecture')).to.equal('all');
    expect(await field('Depends')).to.equal('nodejs (>= 20)');
    expect((await execFileAsync('dpkg-deb', ['-I', deb, 'conffiles'])).stdout.trim().split('\n')).to.deep.equal(['/etc/syncfail2ban/config.cfg']);
  });

  it('holds the program with its production packages only, the commands, units, man pages and the example config (mode 600)', async () => {
    const listing = (await execFileAsync('dpkg-deb', ['-c', deb], { maxBuffer: 64 * 1024 * 1024 })).stdout.trim().split('\n');
    const entries = new Map(listing.map((line) => {
      const fields = line.split(/\s+/);
      return [fields.slice(5).join(' ').replace(/^\./, ''), { mode: fields[0]!, owner: fields[1]! }] as const;
    }));
    const expected: Record<string, string> = {
      '/usr/bin/syncfail2ban': '-rwxr-xr-x',
      '/usr/bin/syncfail2ban-client': '-rwxr-xr-x',
      '/usr/bin/syncfail2ban-broker': '-rwxr-xr-x',
      '/etc/syncfail2ban/syncfail2ban-client': '-rwxr-xr-x',
      '/etc/syncfail2ban/config.cfg': '-rw-------',
      [`${LIB}/dist/agent/main.js`]: '-rw-r--r--',
      [`${LIB}/dist/cli/client.bundle.cjs`]: '-rwxr-xr-x',
      [`${LIB}/node_modules/mqtt/package.json`]: '-rw-r--r--',
      [`${LIB}/etc/fail2ban/action.d/sync-action.conf`]: '-rw-r--r--',
      '/lib/systemd/system/syncfail2ban.service': '-rw-r--r--',
      '/lib/systemd/system/syncfail2ban-broker.service': '-rw-r--r--',
      '/usr/share/man/man8/syncfail2ban.8.gz': '-rw-r--r--',
      '/usr/share/man/man8/syncfail2ban-client.8.gz': '-rw-r--r--',
      '/usr/share/man/man8/syncfail2ban-broker.8.gz': '-rw-r--r--',
      '/usr/share/man/man5/syncfail2ban.conf.5.gz': '-rw-r--r--',
    };
    for (const [path, mode] of Object.entries(expected)) expect(entries.get(path)?.mode, path).to.equal(mode);
    expect([...entries.values()].every((entry) => entry.owner === 'root/root')).to.equal(true);
    const paths = [...entries.keys()];
    // Development packages (mqtt itself depends on some @types), tests, source maps and what fail2ban's side owns at run time stay out.
    expect(paths.filter((path) => /\/node_modules\/(typescript|esbuild|mocha|chai|@esbuild)\//.test(path))).to.deep.equal([]);
    expect(paths.filter((path) => path.startsWith(`${LIB}/dist/`) && (path.includes('/dist/test/') || path.endsWith('.map')))).to.deep.equal([]);
    expect(paths.filter((path) => path.startsWith('/etc/fail2ban') || path.startsWith('/var/'))).to.deep.equal([]);
  });

  it('the packaged commands call /usr/bin/node on the packaged program, which runs from the package tree alone', async () => {
    const root = join(tmp, 'unpacked');
    await execFileAsync('dpkg-deb', ['-x', deb, root]);
    const wrapper = await readFile(join(root, 'usr/bin/syncfail2ban-client'), 'utf8');
    expect(wrapper).to.match(new RegExp(`\\nexec /usr/bin/node ${LIB}/dist/cli/client.bundle.cjs "\\$@"\\n$`));
    const unit = await readFile(join(root, 'lib/systemd/system/syncfail2ban.service'), 'utf8');
    expect(unit.split('\n')).to.include.members(['ExecStart=/usr/bin/syncfail2ban --config /etc/syncfail2ban/config.cfg', 'RestartPreventExitStatus=78']);
    for (const [script, name] of [['dist/agent/main.js', 'syncfail2ban'], ['dist/cli/client.bundle.cjs', 'syncfail2ban-client'], ['dist/broker/main.js', 'syncfail2ban-broker']]) {
      const result = await execFileAsync(process.execPath, [join(root, LIB, script!), '--version'], { cwd: tmp, env: {} });
      expect(result.stdout).to.equal(`${name} ${version}\n`);
    }
  });

  it('maintainer scripts: keep the original client, set up fail2ban, refuse removal while a jail runs sync-action, purge the state', async () => {
    const control = join(tmp, 'control');
    await execFileAsync('dpkg-deb', ['-e', deb, control]);
    const root = join(tmp, 'host');
    await mkdir(join(root, 'etc/syncfail2ban'), { recursive: true });
    await writeFile(join(root, 'etc/syncfail2ban/syncfail2ban-client'), '#!/usr/bin/python3\n# the original client\n');
    await mkdir(join(root, 'etc/fail2ban'), { recursive: true });
    await writeFile(join(root, 'etc/fail2ban/jail.local'), jailLocal({ syncAction: true }));

    // dpkg's order for an install: preinst, unpack, postinst.
    const preinst = await maintainerScript(control, root, 'preinst', 'install');
    expect(preinst.code, preinst.stderr).to.equal(0);
    expect(await readFile(join(root, 'etc/syncfail2ban/syncfail2ban-client.orig'), 'utf8')).to.include('the original client');
    await execFileAsync('dpkg-deb', ['-x', deb, root]);
    const postinst = await maintainerScript(control, root, 'postinst', 'configure');
    expect(postinst.code, postinst.stderr).to.equal(0);
    expect(await readFile(join(root, 'etc/fail2ban/action.d/sync-action.conf'), 'utf8')).to.equal(await readFile(join(ROOT, 'etc/fail2ban/action.d/sync-action.conf'), 'utf8'));
    expect(await exists(join(root, 'etc/fail2ban/filter.d/sync-filter.conf'))).to.equal(true);
    expect(await exists(join(root, 'var/log/syncfail2ban-dummy.log'))).to.equal(true);

    const refused = await maintainerScript(control, root, 'prerm', 'remove');
    expect(refused.code).not.to.equal(0);
    expect(refused.stderr).to.include('refusing to uninstall: a fail2ban jail still runs sync-action, which calls /etc/syncfail2ban/syncfail2ban-client on every ban (/etc/fail2ban/jail.local)');
    expect(await exists(join(root, 'etc/fail2ban/action.d/sync-action.conf'))).to.equal(true);

    await writeFile(join(root, 'etc/fail2ban/jail.local'), jailLocal({ syncAction: false }));
    const prerm = await maintainerScript(control, root, 'prerm', 'remove');
    expect(prerm.code, prerm.stderr).to.equal(0);
    expect(prerm.stdout).to.include('removed /etc/fail2ban/action.d/sync-action.conf');
    expect(prerm.stdout).to.include('kept /etc/fail2ban/filter.d/sync-filter.conf: a jail still uses sync-filter');
    expect(await exists(join(root, 'var/log/syncfail2ban-dummy.log'))).to.equal(true);

    const postrm = await maintainerScript(control, root, 'postrm', 'remove');
    expect(postrm.code, postrm.stderr).to.equal(0);
    expect(postrm.stdout).to.include('kept /etc/syncfail2ban/config.cfg');

    // dpkg --purge: the conffile goes first, then postrm purge removes the state.
    await mkdir(join(root, 'var/lib/syncfail2ban'), { recursive: true });
    await writeFile(join(root, 'var/lib/syncfail2ban/opnsense-bridge.json'), '{}');
    await rm(join(root, 'etc/syncfail2ban/config.cfg'));
    const purge = await maintainerScript(control, root, 'postrm', 'purge');
    expect(purge.code, purge.stderr).to.equal(0);
    expect(await exists(join(root, 'var/lib/syncfail2ban'))).to.equal(false);
    expect(purge.stdout).to.include('kept /etc/syncfail2ban: it holds files of yours');
    expect(await readdir(join(root, 'etc/syncfail2ban'))).to.include('syncfail2ban-client.orig');
  });

  it('preinst refuses beside the original installed with pip', async () => {
    const control = join(tmp, 'control-pip');
    await execFileAsync('dpkg-deb', ['-e', deb, control]);
    const root = join(tmp, 'pip-host');
    await mkdir(join(root, 'usr/local/bin'), { recursive: true });
    await writeFile(join(root, 'usr/local/bin/syncfail2ban-client'), '#!/usr/bin/python3\nfrom syncfail2ban import main\n');
    const preinst = await maintainerScript(control, root, 'preinst', 'install');
    expect(preinst.code).not.to.equal(0);
    expect(preinst.stderr).to.include('the original syncfail2ban is installed with pip (/usr/local/bin/syncfail2ban-client is its Python script)');
  });
});
