import { cpSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetPart } from '../../../agent/fleet/fleet-part.js';
import { FleetState } from '../../../agent/fleet/fleet-state.js';
import { Holdings, type HoldingLimits } from '../../../agent/fleet/holdings.js';
import { Adoption } from '../../../agent/fleet/adoption.js';
import { Projection, type Change, type Follower } from '../../../agent/fleet/projection.js';
import type { Action, SyncEvent } from '../../../src/event.js';
import { mustParseAddress } from '../../../src/ip.js';
import { decodeSnapshotPart, encodeSnapshot, type SnapshotPart } from '../../../src/snapshot.js';
import type { PartStatus } from '../../../src/status.js';
import { captureLog } from '../../support/capture-log.js';
import { waitFor } from '../../support/wait.js';

/** This host's node id: its own bans are held but never projected into its sync jail. */
export const SELF = 'host-b';

export function event(action: Action, ip: string, origin?: string, jail = 'sshd'): SyncEvent {
  return { jail, action, address: mustParseAddress(ip), ...(origin === undefined ? {} : { origin }) };
}

/** The parts of a snapshot as a receiver decodes them. */
export function parts(origin: string, addresses: readonly string[], jail = 'sshd'): SnapshotPart[] {
  return encodeSnapshot(origin, addresses).map((payload) => {
    const decoded = decodeSnapshotPart(`f2b/${jail}/snapshot`, Buffer.from(payload));
    if (!decoded.ok) throw new Error(decoded.detail);
    return decoded.part;
  });
}

/** `count` distinct addresses 10.<block>.x.y (block < 256 covers 65,536; more spill into the next blocks). */
export function addresses(block: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `10.${block + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`);
}

/**
 * A fleet state in a temp state_dir with one projection, sshd -> sshd-sync, whose sink records
 * what it was asked in order ("ban sshd-sync 203.0.113.1"). `start()` again opens the same
 * state_dir (after close()); `crashed()` opens a copy of what state_dir holds at this moment,
 * which is what a start after a kill -9 now would find.
 */
export class FleetHarness {
  readonly submitted: string[] = [];
  /** Also hands the sink's changes on (to a real Batcher), when set. */
  forward: ((changes: readonly Change[]) => void) | undefined;
  private readonly open: FleetState[] = [];
  private readonly copies: FleetHarness[] = [];

  private constructor(readonly dir: string) {}

  static async create(): Promise<FleetHarness> {
    return new FleetHarness(await mkdtemp(join(tmpdir(), 'sf2b-fleet-')));
  }

  start(limits?: HoldingLimits, snapshotDeadlineMs?: number) {
    const captured = captureLog();
    const holdings = new Holdings(limits);
    const sink: Follower = {
      projection: new Projection(new Map([['sshd', 'sshd-sync']]), SELF),
      submit: (changes) => {
        for (const { action, target, address } of changes) this.submitted.push(`${action} ${target} ${address}`);
        this.forward?.(changes);
      },
    };
    const fleet = new FleetState(holdings, this.dir, [sink], captured.log, { snapshotDeadlineMs, nodeId: SELF });
    fleet.load();
    this.open.push(fleet);
    const part = new FleetPart(fleet, new Adoption(this.dir));
    return { fleet, holdings, status: (): PartStatus => part.status(), ...captured };
  }

  /** A harness on a copy of state_dir as it is now: what a kill -9 at this moment leaves on disk. */
  async crashed(): Promise<FleetHarness> {
    const copy = new FleetHarness(await mkdtemp(join(tmpdir(), 'sf2b-fleet-crashed-')));
    cpSync(this.dir, copy.dir, { recursive: true });
    this.copies.push(copy);
    return copy;
  }

  async cleanUp(): Promise<void> {
    for (const fleet of this.open) await fleet.close();
    for (const copy of this.copies) await copy.cleanUp();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Waits until no complete snapshot's release is under way. */
export async function releasesDone(fleet: FleetState, timeoutMs = 60_000): Promise<void> {
  await waitFor(() => fleet.status().releasing === 0, 'the releases under way to end', timeoutMs, 5);
}

export function heldBy(fleet: FleetState, origin: string, jail = 'sshd'): string[] {
  return [...fleet.holdings.heldBy(origin, jail).keys()];
}
