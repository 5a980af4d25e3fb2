/**
 * What the bridge added to each alias of ONE firewall, so that it only ever removes its own
 * entries: pf tables have no notion of who added an address.
 *
 * `added` is persisted and written ahead of the API call ("added or being added"), so a
 * crash between the call and the next state write cannot turn the bridge's own entry into
 * one it believes an admin made. `foreign` is what the last listing showed that the bridge
 * did not add; it is only kept in memory and refreshed by every reconciliation, so after a
 * start nothing may be claimed in an alias before it has been listed (`listed()`): an
 * admin's entry would otherwise look like a fresh add (alias_util answers "done" for an
 * entry already there) and go with the next unban.
 */
export class FirewallLedger {
  private readonly added = new Map<string, Set<string>>();
  private readonly foreign = new Map<string, Set<string>>();
  /** Per alias being listed: what the bridge removed meanwhile (the listing may predate the removal). */
  private readonly removedWhileListing = new Map<string, Set<string>>();

  constructor(readonly firewall: string) {}

  has(alias: string, address: string): boolean {
    return this.added.get(alias)?.has(address) ?? false;
  }

  /** Whether the alias has been listed in full since start, so `isForeign` knows its other entries. */
  listed(alias: string): boolean {
    return this.foreign.has(alias);
  }

  /** Whether the last listing showed entries the bridge did not add. */
  sawForeign(alias: string): boolean {
    return (this.foreign.get(alias)?.size ?? 0) > 0;
  }

  isForeign(alias: string, address: string): boolean {
    return this.foreign.get(alias)?.has(address) ?? false;
  }

  /** True when the bridge added the address or saw it in the alias: no add is outstanding. */
  present(alias: string, address: string): boolean {
    return this.has(alias, address) || this.isForeign(alias, address);
  }

  add(alias: string, address: string): void {
    let set = this.added.get(alias);
    if (!set) this.added.set(alias, (set = new Set()));
    set.add(address);
    this.foreign.get(alias)?.delete(address);
  }

  /** Takes back a claim whose add was never sent or did not go through: the address is not the bridge's. */
  unclaim(alias: string, address: string): void {
    const set = this.added.get(alias);
    set?.delete(address);
    if (set?.size === 0) this.added.delete(alias);
  }

  /** A claimed address turned out to be in the alias already, put there by someone else. */
  disown(alias: string, address: string): void {
    this.unclaim(alias, address);
    this.foreign.get(alias)?.add(address);
  }

  /** The bridge removed the address from the alias. */
  remove(alias: string, address: string): void {
    this.unclaim(alias, address);
    this.removedWhileListing.get(alias)?.add(address);
  }

  addresses(alias: string): Set<string> {
    return new Set(this.added.get(alias) ?? []);
  }

  aliases(): string[] {
    return [...this.added.keys()];
  }

  /** Call before requesting a listing of the alias, then noteListing with its result. */
  listingStarted(alias: string): void {
    this.removedWhileListing.set(alias, new Set());
  }

  /** The listing failed: nothing was learnt. */
  listingFailed(alias: string): void {
    this.removedWhileListing.delete(alias);
  }

  /** Records a full listing of the alias: whatever the bridge neither added nor just removed is someone else's. */
  noteListing(alias: string, present: ReadonlySet<string>): void {
    const ours = this.added.get(alias);
    const removed = this.removedWhileListing.get(alias);
    this.removedWhileListing.delete(alias);
    this.foreign.set(alias, new Set([...present].filter((address) => !ours?.has(address) && !removed?.has(address))));
  }

  toJSON(): Record<string, string[]> {
    return Object.fromEntries([...this.added].map(([alias, set]) => [alias, [...set]]));
  }
}
