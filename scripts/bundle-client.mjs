// Bundles syncfail2ban-client into one CommonJS file, dist/cli/client.bundle.cjs: fail2ban
// runs it once per ban, one ban after another, and node starts one file much faster than a
// tree of ES modules. Run by "npm run build" after tsc; esbuild is only a build tool, the
// installed program needs node alone. `status` and `-f` load their modules from dist/
// when used, so the common path (-a) parses only what it runs.
import { build } from 'esbuild';
import { writeFileSync } from 'node:fs';

const { metafile } = await build({
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/cli/client.bundle.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['../src/reporting/status-text.js', './fleet-text.js', './full-sync.js', '../src/snapshot.js', '../src/control-protocol.js'],
  // package.json (for --version) is found relative to the running file, as from dist/src/.
  define: { 'import.meta.url': '__bundleUrl' },
  banner: { js: 'const __bundleUrl = require("node:url").pathToFileURL(__filename).href;' },
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
  metafile: true,
});
// What went in, for the licences an install lists (scripts/bundle-programs.mjs).
writeFileSync('dist/cli/client.bundle.inputs.json', JSON.stringify(Object.keys(metafile.inputs)));
