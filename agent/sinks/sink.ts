import type { Change, Follower } from '../fleet/projection.js';
import type { Part } from '../../src/part.js';
import type { Backend } from './batcher.js';

/**
 * A sink: where the fleet's bans are kept (the fail2ban sync jails, the aliases of one
 * OPNsense firewall, the kernel sets). It is a Part (start, stop with a deadline, status) and
 * follows the holdings store through its projection: the fleet state hands it every change
 * of what a target should hold, and it reconciles its targets towards the projection.
 *
 * To add a sink:
 *  1. a folder agent/sinks/<name>/ with a class implementing Sink:
 *     - `projection`: which primary jail maps to which of its targets ([jails], [opn_aliases],
 *       …), and whose holdings count (`new Projection(mapping, excluded origin)`);
 *     - `submit(changes)`: queue them and return at once, never throw (a Batcher does it:
 *       it batches a short window, retries with capped backoff while the target is down,
 *       keeps the last change per address, counts what the target refused as dropped);
 *     - `reconcile()`: read what each target holds, queue what the projection wants and it
 *       lacks, and unbans for what the store released (`projection.released`) that it still
 *       holds; never remove what the agent did not put there. Run it at start, when the
 *       target answers again, and periodically;
 *     - `status()`: kind 'sink', with `sinkMeasures` and `sinkProblems` (batcher.ts), so
 *       that status and /metrics show it like every other sink;
 *     - the writes to the target behind a `Backend` (batcher.ts), built as `pick(real)`:
 *  2. build it in buildSinks (factory.ts), which passes `pick`: under dry_run it returns the
 *     dry-run backend in place of the real one, so the sink runs everything but the writes.
 *     State several sinks share in state_dir is kept by a Part of its own that the factory
 *     returns as a keeper (as the OPNsense bridge keeps what each firewall's sink added);
 *  3. its config keys in src/config.ts (validated there, typed) and in the docs.
 * Nothing else: the agent starts, stops and reports every sink the factory builds, and the
 * fleet state feeds each one.
 */
export interface Sink extends Part, Follower {
  submit(changes: readonly Change[]): void;
  /**
   * Makes every target hold its projection now (see above); resolves when done. Never
   * throws: a target that fails is a problem in status and tried again.
   */
  reconcile(): Promise<void>;
}

/** The backend a sink writes through: `real`, or under dry_run one that only logs (see buildSinks). */
export type PickBackend = (real: Backend) => Backend;
