import type { FleetView } from '../src/control-protocol.js';
import { ago } from '../src/reporting/status-text.js';

/** Origins listed per jail in the text; --json lists all. */
const ORIGINS_SHOWN = 20;

/** Prints `syncfail2ban-client status --fleet`; returns the exit code (0). */
export function printFleet(view: FleetView, json: boolean, out: NodeJS.WritableStream = process.stdout): number {
  out.write(json ? `${JSON.stringify(view, null, 2)}\n` : renderFleet(view, Date.now()));
  return 0;
}

/** The fleet as this agent holds it: per primary jail, who holds how many bans and when each origin was last heard from, then the addresses most origins hold. */
export function renderFleet({ nodeId, jails, lastEvents }: FleetView, now: number): string {
  const lines = [`fleet as ${nodeId} holds it: ${jails.length === 0 ? 'no bans held' : `${jails.length} jail(s)`}`];
  const heard = (origin: string) => (lastEvents[origin] ? `${ago(lastEvents[origin]!, now)} ago` : '-');
  for (const { jail, addresses, origins, mostHeld } of jails) {
    lines.push('', `jail ${jail}: ${count(addresses)} address(es) held by ${origins.length} origin(s)`);
    const width = Math.max(6, ...origins.slice(0, ORIGINS_SHOWN).map(({ origin }) => origin.length));
    lines.push(`  ${'origin'.padEnd(width)}  ${'holdings'.padStart(9)}  last event`);
    for (const { origin, holdings } of origins.slice(0, ORIGINS_SHOWN)) lines.push(`  ${origin.padEnd(width)}  ${count(holdings).padStart(9)}  ${heard(origin)}`);
    if (origins.length > ORIGINS_SHOWN) lines.push(`  ... and ${origins.length - ORIGINS_SHOWN} more origin(s) (--json lists all)`);
    lines.push(mostHeld.length === 0 ? '  held by more than one origin: none' : '  held by the most origins:');
    for (const { address, origins: holders } of mostHeld) lines.push(`    ${address}  ${holders.length}: ${holders.join(', ')}`);
  }
  const quiet = Object.keys(lastEvents).filter((origin) => !jails.some((jail) => jail.origins.some((entry) => entry.origin === origin)));
  if (quiet.length > 0) lines.push('', `heard from, holding nothing here: ${quiet.slice(0, ORIGINS_SHOWN).map((origin) => `${origin} (${heard(origin)})`).join(', ')}${quiet.length > ORIGINS_SHOWN ? `, ... and ${quiet.length - ORIGINS_SHOWN} more` : ''}`);
  return `${lines.join('\n')}\n`;
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}
