import { expect } from 'chai';
import { join } from 'node:path';
import { BIN, ROOT } from '../support/paths.js';
import { run } from '../support/run.js';

const SCRIPT = join(ROOT, 'etc/bash-completion/syncfail2ban');

/** The options a --help lists under "Options:" (short and long), and those that take a value. */
function helpOptions(help: string): { all: string[]; valued: string[] } {
  const section = help.slice(help.indexOf('\nOptions:\n'));
  const all: string[] = [];
  const valued: string[] = [];
  for (const [, short, long, value] of section.matchAll(/^ {2}(?:-(\w), )?\s*--([a-z-]+)( <)?/gm)) {
    const names = [...(short ? [`-${short}`] : []), `--${long}`];
    all.push(...names);
    if (value) valued.push(...names);
  }
  return { all: all.sort(), valued: valued.sort() };
}

/** COMPREPLY of the completion function for a command line whose last word is being completed. */
async function complete(...words: string[]): Promise<string[]> {
  const script = `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _syncfail2ban "$1"; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const result = await run('bash', ['-c', script, 'complete', SCRIPT, ...words]);
  expect(result.code, result.stderr).to.equal(0);
  return result.stdout.split('\n').filter(Boolean).sort();
}

describe('bash completion (etc/bash-completion/syncfail2ban)', function () {
  this.timeout(60_000);

  for (const [program, bin] of [
    ['syncfail2ban', BIN.agent],
    ['syncfail2ban-client', BIN.client],
    ['syncfail2ban-broker', BIN.broker],
  ] as const) {
    it(`${program}: offers exactly the options of its --help, no option after one that takes a value, all after one that does not`, async () => {
      const help = await run(process.execPath, [bin, '--help']);
      expect(help.code).to.equal(0);
      const { all, valued } = helpOptions(help.stdout);
      expect(all).to.include.members(['--config', '--help', '--version']);
      expect(await complete(program, '-')).to.deep.equal(all);
      for (const option of valued.filter((name) => name !== '-c' && name !== '--config')) {
        expect(await complete(program, option, '-'), `after ${option}`).to.deep.equal([]);
      }
      expect(await complete(program, '--help', '-')).to.deep.equal(all);
      for (const option of all.filter((name) => !valued.includes(name))) expect(await complete(program, option, '--'), `after ${option}`).to.not.be.empty;
      expect(await complete(program, '--config', join(ROOT, 'etc/config.c'))).to.deep.equal([join(ROOT, 'etc/config.cfg')]);
    });
  }

  it('completes the commands and the action of -a', async () => {
    expect(await complete('syncfail2ban-client', 'st')).to.deep.equal(['status']);
    expect(await complete('syncfail2ban-broker', '')).to.deep.equal(['status']);
    expect(await complete('syncfail2ban', '')).to.deep.equal(['status']);
    expect(await complete('syncfail2ban-client', 'status', '')).to.deep.equal([]);
    expect(await complete('syncfail2ban-client', '-a', 'sshd', 'ba')).to.deep.equal(['ban', 'banip']);
    expect(await complete('syncfail2ban', '-c', '/etc/x.cfg', '--announce', 'sshd', '')).to.deep.equal(['ban', 'banip', 'unban', 'unbanip']);
    expect(await complete('syncfail2ban-client', '-a', 'sshd', 'ban', '')).to.deep.equal([]);
  });
});
