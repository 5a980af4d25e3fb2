// Prints the test files `npm test` runs, the longest first. mocha --parallel hands files to its
// workers in the order given; with the long ones last, two cores would sit one long file each
// while the rest of the suite is done (the whole run's time is then the tail). The list below is
// only an order: files not in it run after it, in path order, and every file runs once.
// Measured on a fresh clone (wall time of each file, three run at once), slowest first.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const SLOWEST_FIRST = [
  'e2e/snapshot-scale',
  'e2e/cluster',
  'security/fleet-state-attacks',
  'nftables/nft-sink',
  'e2e/fleet-state',
  'security/login-starvation',
  'bridge/bridge-only',
  'e2e/mesh',
  'e2e/python-action',
  'install/deb-apt',
  'service/reload',
  'security/mosquitto-auth',
  'e2e/leases',
  'security/tls',
  'service/truthful-status',
  'service/doctor',
  'bridge/mesh-bridge',
];

const root = 'dist/test';

function testFiles(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((entry) => (entry.isDirectory() ? testFiles(join(dir, entry.name)) : entry.name.endsWith('.test.js') ? [join(dir, entry.name)] : []));
}

const all = testFiles(root);
const rank = (file) => {
  const index = SLOWEST_FIRST.indexOf(file.slice(root.length + 1, -'.test.js'.length));
  return index === -1 ? SLOWEST_FIRST.length : index;
};
// A stable sort: the listed files by their rank, then the others in path order.
console.log(all.map((file, index) => ({ file, index })).sort((a, b) => rank(a.file) - rank(b.file) || a.index - b.index).map(({ file }) => file).join('\n'));
