// Bundles the installed programs into TREE/dist, so that an install holds our code and the
// packages it runs, and no node_modules: the agent and the broker (ES modules, code they
// share in chunks/; the agent's nft helper process), next to the client bundle and the modules it loads when used
// (`status`, `status --fleet`, `-f`). Files keep the paths they have in dist/, two levels below the tree's
// root, where package.json and etc/ are found. TREE/THIRD-PARTY-LICENSES lists the bundled
// packages with their licence texts. Run by scripts/install.sh after "npm run build";
// esbuild is a build tool only.
//
//   node scripts/bundle-programs.mjs TREE
import { build } from 'esbuild';
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [tree] = process.argv.slice(2);
if (!tree) {
  process.stderr.write('usage: bundle-programs.mjs TREE\n');
  process.exit(2);
}
const outdir = join(tree, 'dist');

// src/log.js loads pino-pretty on demand through createRequire, which a bundler cannot
// follow: in the bundle it becomes a plain require, bundled like every other package.
const PRETTY = "createRequire(import.meta.url)('pino-pretty')";
const bundlePrettyPrinter = {
  name: 'bundle-pino-pretty',
  setup(context) {
    context.onLoad({ filter: /[\\/]dist[\\/]src[\\/]log\.js$/ }, ({ path }) => {
      const source = readFileSync(path, 'utf8');
      if (!source.includes(PRETTY)) throw new Error(`${path} no longer loads pino-pretty as ${PRETTY}: update scripts/bundle-programs.mjs`);
      return { contents: source.replace(PRETTY, "require('pino-pretty')"), loader: 'js' };
    });
  },
};

const APACHE_2 = "The Apache License, Version 2.0: the text is syncfail2ban's own LICENSE file (on Debian, /usr/share/common-licenses/Apache-2.0).";

const result = await build({
  entryPoints: ['dist/agent/main.js', 'dist/agent/sinks/nftables/nft-helper-main.js', 'dist/broker/main.js', 'dist/src/reporting/status-text.js', 'dist/cli/fleet-text.js', 'dist/cli/full-sync.js', 'dist/src/snapshot.js', 'dist/src/control-protocol.js'],
  outbase: 'dist',
  outdir,
  entryNames: '[dir]/[name]',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Packages written as CommonJS call require(), which an ES module does not have.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  // Optional native speed-ups that ws tries to load and does without.
  external: ['bufferutil', 'utf-8-validate'],
  plugins: [bundlePrettyPrinter],
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});
copyFileSync('dist/cli/client.bundle.cjs', join(outdir, 'cli/client.bundle.cjs'));

const clientInputs = JSON.parse(readFileSync('dist/cli/client.bundle.inputs.json', 'utf8'));
writeFileSync(join(tree, 'THIRD-PARTY-LICENSES'), thirdPartyLicenses([...Object.keys(result.metafile.inputs), ...clientInputs]));

/** Each bundled package (by its directory: two versions of one package are two entries) with its licence text. */
function thirdPartyLicenses(inputs) {
  const directories = new Set();
  for (const input of inputs) {
    const last = [...input.matchAll(/node_modules\/(?:@[^/]+\/)?[^/]+\//g)].at(-1);
    if (last) directories.add(input.slice(0, last.index + last[0].length - 1));
  }
  const sections = [...directories].map((directory) => {
    const { name, version, license } = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8'));
    const file = readdirSync(directory).find((entry) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(entry));
    const text = file ? readFileSync(join(directory, file), 'utf8').trim() : licenceSectionOfReadme(directory) ?? `(${name} ships no licence text; its package.json names the licence ${license})`;
    return { heading: `${name} ${version} (${license})`, text: isApache2(text) ? APACHE_2 + notice(directory) : text };
  });
  sections.sort((a, b) => a.heading.localeCompare(b.heading));
  const intro = 'The programs in dist/ bundle these npm packages, each under its own licence:\n\n';
  return `${intro}${sections.map(({ heading }) => `  ${heading}\n`).join('')}\n${sections.map(({ heading, text }) => `=== ${heading}\n\n${text}\n`).join('\n')}`;
}

/** The Apache License's own text, which syncfail2ban's LICENSE holds once for all. */
function isApache2(text) {
  return /^\s*Apache License\s+Version 2\.0, January 2004/.test(text) && text.includes('END OF TERMS AND CONDITIONS');
}

/** The NOTICE file an Apache-licensed package asks to be passed on, if it has one. */
function notice(directory) {
  const file = readdirSync(directory).find((entry) => /^notice(\.(md|txt))?$/i.test(entry));
  return file ? `\n\n${readFileSync(join(directory, file), 'utf8').trim()}` : '';
}

/** A package without a licence file may carry the text in its README, under a "License" heading. */
function licenceSectionOfReadme(directory) {
  const readme = readdirSync(directory).find((entry) => /^readme(\.md)?$/i.test(entry));
  const section = readme && /^#+ *licen[cs]e *\n([\s\S]*?)(?=^#|(?![\s\S]))/im.exec(readFileSync(join(directory, readme), 'utf8'));
  return section ? section[1].trim() : undefined;
}
