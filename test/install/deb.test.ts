import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../support/paths.js';
import { run, type RunResult } from '../support/run.js';

const execFileAsync = promisify(execFile);
const LIB = '/usr/lib/syncfail2ban';

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
    const built = await run('make', ['-s', '-C', ROOT, 'deb', `DEB_DIR=${tmp}`, 'NO_BUILD=1'], 180_000);
    expect(built.code, built.stdout + built.stderr).to.equal(0);
    version = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    deb = join(tmp, `syncfail2ban_${version}_all.deb`);
    expect(built.stdout).to.include(`built ${deb}`);
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('its control file: the version of package.json, any architecture, Node.js 20 or newer; no conffile, so dpkg never asks', async () => {
    const field = async (name: string) => (await execFileAsync('dpkg-deb', ['-f', deb, name])).stdout.trim();
    expect(await field('Package')).to.equal('syncfail2ban');
    expect(await field('Version')).to.equal(version);
    expect(await field('Architecture')).to.equal('all');
    expect(await field('Depends')).to.equal('nodejs (>= 20)');
    expect(await field('Maintainer')).to.match(/^[^<>]+ <[^@\s]+@[^@\s]+\.[a-z]+>$/);
    // At most 6 MB installed.
    expect(Number(await field('Installed-Size'))).to.be.within(500, 6 * 1024);
    const conffiles = await run('dpkg-deb', ['-I', deb, 'conffiles']);
    expect(conffiles.code, conffiles.stdout).not.to.equal(0);
  });

  it('lintian: no error and no warning', async () => {
    const lintian = await run('lintian', ['--fail-on', 'error,warning', '--display-info', deb], 180_000);
    expect(lintian.code, lintian.stdout + lintian.stderr).to.equal(0);
    // What is left is informational, each tag explained in docs/install.md.
    const tags = [...new Set(lintian.stdout.split('\n').filter((line) => /^[EWIP]: /.test(line)).map((line) => line.split(' ')[2]!))];
    const explained = await readFile(join(ROOT, 'docs/install.md'), 'utf8');
    for (const tag of tags) expect(explained, `lintian tag ${tag}`).to.include(tag);
  });

  it('holds production files only: the bundled programs, commands, units, man pages, docs, changelog and copyright', async () => {
    const listing = (await execFileAsync('dpkg-deb', ['-c', deb], { maxBuffer: 64 * 1024 * 1024 })).stdout.trim().split('\n');
    const entries = new Map(listing.map((line) => {
      const fields = line.split(/\s+/);
      return [fields.slice(5).join(' ').replace(/^\./, '').replace(/ -> .*$/, ''), { mode: fields[0]!, owner: fields[1]! }] as const;
    }));
    const doc = '/usr/share/doc/syncfail2ban';
    const expected: Record<string, string> = {
      '/usr/bin/syncfail2ban': '-rwxr-xr-x',
      '/usr/bin/syncfail2ban-client': '-rwxr-xr-x',
      '/usr/bin/syncfail2ban-broker': '-rwxr-xr-x',
      [`${LIB}/dist/agent/main.js`]: '-rwxr-xr-x',
      [`${LIB}/dist/broker/main.js`]: '-rwxr-xr-x',
      [`${LIB}/dist/cli/client.bundle.cjs`]: '-rwxr-xr-x',
      [`${LIB}/dist/src/reporting/status-text.js`]: '-rw-r--r--',
      [`${LIB}/etc/config.cfg`]: '-rw-r--r--',
      [`${LIB}/etc/fail2ban/action.d/sync-action.conf`]: '-rw-r--r--',
      [`${LIB}/package.json`]: '-rw-r--r--',
      '/lib/systemd/system/syncfail2ban.service': '-rw-r--r--',
      '/lib/systemd/system/syncfail2ban-broker.service': '-rw-r--r--',
      '/usr/share/man/man8/syncfail2ban.8.gz': '-rw-r--r--',
      '/usr/share/man/man8/syncfail2ban-client.8.gz': '-rw-r--r--',
      '/usr/share/man/man8/syncfail2ban-broker.8.gz': '-rw-r--r--',
      '/usr/share/man/man5/syncfail2ban.conf.5.gz': '-rw-r--r--',
      '/usr/share/bash-completion/completions/syncfail2ban': '-rw-r--r--',
      '/usr/share/bash-completion/completions/syncfail2ban-client': '-rw-r--r--',
      '/usr/share/bash-completion/completions/syncfail2ban-broker': '-rw-r--r--',
      [`${doc}/README.md`]: '-rw-r--r--',
      [`${doc}/docs/install.md`]: '-rw-r--r--',
      [`${doc}/docs/configuration.md`]: '-rw-r--r--',
      [`${doc}/examples/config.cfg`]: '-rw-r--r--',
      [`${doc}/examples/jail.local`]: '-rw-r--r--',
      [`${doc}/changelog.gz`]: '-rw-r--r--',
      [`${doc}/copyright`]: '-rw-r--r--',
    };
    for (const [path, mode] of Object.entries(expected)) expect(entries.get(path)?.mode, path).to.equal(mode);
    expect([...entries.values()].every((entry) => entry.owner === 'root/root')).to.equal(true);
    const paths = [...entries.keys()];
    // Nothing the maintainer scripts create and the admin may change or already have; no package tree, no sources or maps.
    expect(paths.filter((path) => path.startsWith('/etc') || path.startsWith('/var/'))).to.deep.equal([]);
    expect(paths.filter((path) => path.includes('node_modules') || /\.(ts|map)$/.test(path) || path.includes('/test/'))).to.deep.equal([]);
    expect(paths.length).to.be.below(120);
  });

  it('its copyright file holds the licences: ours by reference to common-licenses, each bundled package\'s text', async () => {
    const root = join(tmp, 'unpacked-copyright');
    await execFileAsync('dpkg-deb', ['-x', deb, root]);
    const copyright = await readFile(join(root, 'usr/share/doc/syncfail2ban/copyright'), 'utf8');
    expect(copyright).to.include('/usr/share/common-licenses/Apache-2.0');
    for (const bundled of ['aedes', 'mqtt-packet', 'pino', 'ipaddr.js']) expect(copyright, bundled).to.match(new RegExp(`^=== ${bundled.replace('.', '\\.')} \\d`, 'm'));
    expect(copyright).to.include('Permission is hereby granted, free of charge');
    const changelog = (await execFileAsync('sh', ['-c', `gzip -dc ${join(root, 'usr/share/doc/syncfail2ban/changelog.gz')}`])).stdout;
    expect(changelog.split('\n')[0]).to.equal(`syncfail2ban (${version}) unstable; urgency=medium`);
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
