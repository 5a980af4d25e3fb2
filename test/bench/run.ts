/**
 * `npm run bench [-- <name>...]`: each benchmark measures against a baseline in the same run
 * (machines here are shared and noisy, so only ratios mean something) and prints what it
 * measured. Names pick benchmarks (the file names here); none runs them all.
 */
const benchmarks: Array<[name: string, title: string, run: () => Promise<void>]> = [
  ['fail2ban-ingest', 'fail2ban ingest', async () => (await import('./fail2ban-ingest.js')).run()],
  ['client-startup', 'client start-up', async () => (await import('./client-startup.js')).run()],
  ['opnsense-burst', 'OPNsense burst', async () => (await import('./opnsense-burst.js')).run()],
  ['snapshot', 'snapshot of 100,000 bans', async () => (await import('./snapshot.js')).run()],
  ['cluster-hub', 'clustered hub', async () => (await import('./cluster-hub.js')).run()],
  ['broker-attack', 'broker under attack', async () => (await import('./broker-attack.js')).run()],
  ['fleet-state', 'the fleet state under attack: empty snapshots, a release of 300,000', async () => (await import('./fleet-state.js')).run()],
  ['fleet', 'a fleet of 1,000 hosts on a clustered hub', async () => (await import('./fleet.js')).run()],
  ['leases', '100,000 leases', async () => (await import('./leases.js')).run()],
  ['kernel-sets', 'the fleet\'s bans on a peer: kernel sets against sync jails with a banaction', async () => (await import('./kernel-sets.js')).run()],
  ['action-cost', "what a ban costs fail2ban with each sync action, and its way to a peer", async () => (await import('./action-cost.js')).run()],
];

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !benchmarks.some(([known]) => known === name));
if (unknown.length > 0) {
  process.stderr.write(`npm run bench: no benchmark named ${unknown.join(', ')}; the names are: ${benchmarks.map(([name]) => name).join(', ')}\n`);
  process.exit(2);
}

for (const [name, title, bench] of benchmarks) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  process.stdout.write(`\n== ${title} (${name}) ==\n`);
  await bench();
}
process.exit(0);
