import type { FleetJail, FleetView } from '../../src/control-protocol.js';
import type { Holdings } from './holdings.js';

/** Addresses listed as held by the most origins, per jail. */
export const MOST_HELD_SHOWN = 10;

/**
 * `syncfail2ban-client status --fleet`: per primary jail, how many bans each origin holds and
 * which addresses the most origins hold (one pass over the jail's addresses, keeping the top
 * few: asked for by an operator, not on every event); when each origin was last heard from.
 */
export function fleetView(nodeId: string, holdings: Holdings, lastEvents: ReadonlyMap<string, Date>): FleetView {
  const counts = holdings.counts();
  const jails: FleetJail[] = holdings.jailNames().sort().map((jail) => {
    const origins = Object.entries(counts[jail] ?? {})
      .map(([origin, held]) => ({ origin, holdings: held }))
      .sort((a, b) => b.holdings - a.holdings || a.origin.localeCompare(b.origin));
    let addresses = 0;
    const mostHeld: FleetJail['mostHeld'] = [];
    for (const [address, holders] of holdings.entries(jail)) {
      addresses += 1;
      if (holders.length < 2) continue;
      if (mostHeld.length === MOST_HELD_SHOWN && holders.length <= mostHeld.at(-1)!.origins.length) continue;
      const at = mostHeld.findIndex((entry) => entry.origins.length < holders.length);
      mostHeld.splice(at < 0 ? mostHeld.length : at, 0, { address, origins: [...holders].sort() });
      if (mostHeld.length > MOST_HELD_SHOWN) mostHeld.pop();
    }
    return { jail, addresses, origins, mostHeld };
  });
  return { nodeId, jails, lastEvents: Object.fromEntries([...lastEvents].map(([origin, at]) => [origin, at.toISOString()])) };
}
