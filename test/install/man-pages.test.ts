import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, ROOT } from '../support/paths.js';
import { run } from '../support/run.js';

/** The long options a --help lists under "Options:". */
function helpOptions(help: string): string[] {
  const section = help.slice(help.indexOf('\nOptions:\n'));
  return [...section.matchAll(/^ {2}(?:-\w, )?\s*--([a-z-]+)/gm)].map((match) => match[1]!).sort();
}

/** The long options a man page documents: the `.TP` entries of its OPTIONS section. */
function manOptions(page: string): string[] {
  const section = page.slice(page.indexOf('.SH OPTIONS'), page.indexOf('\n.SH ', page.indexOf('.SH OPTIONS') + 1));
  return [...section.matchAll(/^\.TP\n.*?\\-\\-([a-z\\-]+)/gm)].map((match) => match[1]!.replaceAll('\\-', '-')).sort();
}

describe('man pages', function () {
  this.timeout(60_000);

  for (const [page, bin] of [
    ['syncfail2ban.8', BIN.agent],
    ['syncfail2ban-client.8', BIN.client],
    ['syncfail2ban-broker.8', BIN.broker],
  ] as const) {
    it(`${page} documents exactly the options of --help`, async () => {
      const help = await run(process.execPath, [bin, '--help']);
      expect(help.code).to.equal(0);
      const fromHelp = helpOptions(help.stdout);
      expect(fromHelp).to.include.members(['config', 'help', 'version']);
      expect(manOptions(await readFile(join(ROOT, 'man', page), 'utf8'))).to.deep.equal(fromHelp);
    });
  }

  it('every page renders without a groff warning', async () => {
    for (const page of ['syncfail2ban.8', 'syncfail2ban-client.8', 'syncfail2ban-broker.8', 'syncfail2ban.conf.5']) {
      const result = await run('groff', ['-man', '-ww', '-z', join(ROOT, 'man', page)]);
      expect(result.code, page).to.equal(0);
      expect(result.stderr, page).to.equal('');
    }
  });

  it('syncfail2ban.conf(5) names every key of the shipped example config', async () => {
    const page = (await readFile(join(ROOT, 'man/syncfail2ban.conf.5'), 'utf8')).replaceAll('\\-', '-');
    const example = await readFile(join(ROOT, 'etc/config.cfg'), 'utf8');
    const keys = [...example.matchAll(/^#? ?([a-z][a-z0-9_]*) =/gm)].map((match) => match[1]!).filter((key) => key !== 'sshd');
    expect(keys.length).to.be.above(20);
    expect(keys.filter((key) => !page.includes(key))).to.deep.equal([]);
  });
});
