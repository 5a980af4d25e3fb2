import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { knownConfigNames } from '../../../src/config.js';
import { ROOT } from '../../support/paths.js';

/** The names in the first column of every "| key | default | meaning |" table of the configuration reference. */
function documentedNames(): { keys: Set<string>; sections: Set<string> } {
  const keys = new Set<string>();
  const sections = new Set<string>();
  let inTable = false;
  for (const line of readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8').split('\n')) {
    if (/^\|\s*key\s*\|/.test(line)) inTable = true;
    else if (!line.startsWith('|')) inTable = false;
    else if (inTable && !line.startsWith('|---')) {
      const firstCell = line.split('|')[1];
      for (const [, name] of firstCell.matchAll(/`([^`]+)`/g)) {
        const section = /^\[(.+)\]$/.exec(name);
        if (section) sections.add(section[1]);
        else keys.add(name);
      }
    }
  }
  return { keys, sections };
}

describe('the configuration reference (docs/configuration.md)', () => {
  const documented = documentedNames();
  const known = knownConfigNames();

  it('documents every key and section the parser reads', () => {
    expect(known.keys.filter((key) => !documented.keys.has(key)), 'keys missing from the reference').to.deep.equal([]);
    expect(known.sections.filter((section) => !documented.sections.has(section)), 'sections missing from the reference').to.deep.equal([]);
  });

  it('documents no key or section the parser does not know', () => {
    expect(documented.keys.size).to.be.greaterThan(40);
    expect([...documented.keys].filter((key) => !known.keys.includes(key)), 'keys the parser does not read').to.deep.equal([]);
    expect([...documented.sections].filter((section) => !known.sections.includes(section)), 'sections the parser does not know').to.deep.equal([]);
  });
});
