/**
 * `npm run bench`: each benchmark measures against a baseline in the same run (machines
 * here are shared and noisy, so only ratios mean something) and prints what it measured.
 */
const benchmarks: Array<[string, () => Promise<void>]> = [
  ['fail2ban ingest', async () => (await import('./fail2ban-ingest.js')).run()],
  ['client start-up', async () => (await import('./client-startup.js')).run()],
  ['OPNsense burst', async () => (await import('./opnsense-burst.js')).run()],
  ['snapshot of 100,000 bans', async () => (await import('./snapshot.js')).run()],
  ['clustered hub', async () => (await import('./cluster-hub.js')).run()],
  ['broker under attack', async () => (await import('./broker-attack.js')).run()],
];

for (const [name, bench] of benchmarks) {
  process.stdout.write(`\n== ${name} ==\n`);
  await bench();
}
process.exit(0);
