import { decodeEvent, printable, type SyncEvent } from '../../src/event.js';
import type { RouteResult } from '../fleet/fleet-state.js';
import type { Inbox } from '../links/inbox.js';
import type { NeverBanList } from '../../src/never-ban.js';
import type { RateLimiter } from '../../src/rate-limit.js';
import type { Refusals } from '../../src/refusals.js';
import { counted, counter, type PartStatus } from '../../src/status.js';
import type { Part } from '../../src/part.js';
import { decodeSnapshotEnvelope, isSnapshotTopic, readSnapshotEntries, snapshotPartTokens, type SnapshotHeader, type SnapshotPart } from '../../src/snapshot.js';

const MAX_PEERS_TRACKED = 1_000;

/** Where valid events and snapshot parts go: the fleet state. */
export interface EventTarget {
  apply(event: SyncEvent): RouteResult;
  applySnapshotPart(part: SnapshotPart): RouteResult;
  /** Whether a part is only noted, never applied: its entries need not be read (applySnapshotPart is handed none). */
  onlyNotes(header: SnapshotHeader): boolean;
}

/**
 * The one path from transport to the fleet state: decode and validate, refuse never-ban
 * addresses, then hand the event (or snapshot part) on. Nothing reaches a sink unchecked.
 */
export class Intake implements Part {
  private readonly counts = { received: 0, accepted: 0, ownSkipped: 0 };
  private readonly peersSeen = new Map<string, Date>();
  /** peersSeen as the status's gauge, kept as it changes (built whole, 1,000 origins took a status several ms). */
  private readonly peerLastEvent: Record<string, number> = {};

  constructor(
    private readonly neverBan: NeverBanList,
    private readonly target: EventTarget,
    private readonly refusals: Refusals,
    private readonly perOrigin: RateLimiter,
    /** Where the links deliver: opened to this intake while it runs. */
    private readonly inbox?: Inbox,
  ) {}

  /** `retained`: the broker replays a stored message (a new subscription); it is not a live event. */
  handle(topic: string, payload: Buffer, source: string, retained = false): void {
    this.counts.received += 1;
    if (retained) {
      return this.refusals.refuse('retained', `a retained message on ${printable(topic)}: events are live only; clear it with mosquitto_pub -r -n -t ${printable(topic)}`, { source });
    }
    if (isSnapshotTopic(topic)) return this.handleSnapshotPart(topic, payload, source);
    const decoded = decodeEvent(topic, payload);
    if (!decoded.ok) return this.refusals.refuse(decoded.reason, decoded.detail, { source });

    const { event } = decoded;
    const sender = this.overRate(source, event);
    if (sender) return this.refusals.refuse('rate-limited', `${sender} sends more than rate_limit allows; ${event.action} of ${event.address.text} dropped`, { source });
    // An unban of a protected address is harmless and may clear a ban from before it was protected.
    const neverBan = event.action === 'ban' ? this.neverBan.reason(event.address) : null;
    if (neverBan) {
      return this.refusals.refuse('never-ban', `${event.action} of ${event.address.text} (${neverBan})`, { source, jail: event.jail, origin: event.origin });
    }

    if (event.origin) this.notePeer(event.origin);
    this.count(this.target.apply(event), event.jail, source);
  }

  /**
   * A snapshot part: rate-limit tokens by its size (snapshotPartTokens), taken before its entries
   * are read; never-ban addresses are left out of it. A part the fleet state only notes (this
   * host's own snapshot, which no sink here takes) is noted from its envelope: its entries reach
   * nothing, so they are not read.
   */
  private handleSnapshotPart(topic: string, payload: Buffer, source: string): void {
    const envelope = decodeSnapshotEnvelope(topic, payload);
    if (!envelope.ok) return this.refusals.refuse(envelope.reason, envelope.detail, { source });
    const { header } = envelope;
    const sender = this.overRate(source, header, snapshotPartTokens(payload));
    if (sender) return this.refusals.refuse('rate-limited', `${sender} sends more than rate_limit allows; snapshot part ${header.part + 1}/${header.parts} of ${header.jail} dropped`, { source });
    this.notePeer(header.origin);
    if (this.target.onlyNotes(header)) {
      return this.count(this.target.applySnapshotPart({ ...header, ips: [], invalid: 0, entries: envelope.ips.length }), header.jail, source);
    }
    const { part, excluded } = readSnapshotEntries(envelope, this.neverBan);
    if (part.invalid > 0) this.refusals.refuse('bad-address', `${part.invalid} entries of a snapshot part of ${part.jail} from ${part.origin} are not valid (an address, or its bantime)`, { source });
    if (excluded > 0) this.refusals.refuse('never-ban', `${excluded} never-ban address(es) left out of a snapshot of ${part.jail} from ${part.origin}`, { source });
    this.count(this.target.applySnapshotPart(part), part.jail, source);
  }

  /**
   * Takes rate-limit tokens for an event (one) or a snapshot part, both under one rule: per broker
   * and connection (`via`, which a syncfail2ban broker stamps and a sender cannot choose), else
   * per claimed origin (mosquitto stamps nothing). So a flood claiming someone else's origin
   * drains only its own bucket. Returns the sender when it is over its rate, else nothing.
   */
  private overRate(source: string, { via, origin }: { via?: string; origin?: string }, tokens = 1): string | undefined {
    const sender = via ?? origin ?? 'manual';
    return this.perOrigin.take(`${source} ${sender}`, tokens) ? undefined : sender;
  }

  private count(result: RouteResult, jail: string, source: string): void {
    if (result === 'queued') this.counts.accepted += 1;
    else if (result === 'own') this.counts.ownSkipped += 1;
    else this.refusals.refuse('unmapped-jail', `jail ${printable(jail)} is not mapped here`, { source });
  }

  /** Origins come from the network, so the map is bounded: the longest unseen goes first. */
  private notePeer(origin: string): void {
    const now = new Date();
    this.peersSeen.delete(origin);
    this.peersSeen.set(origin, now);
    this.peerLastEvent[origin] = now.getTime() / 1000;
    if (this.peersSeen.size > MAX_PEERS_TRACKED) {
      const longestUnseen = this.peersSeen.keys().next().value!;
      this.peersSeen.delete(longestUnseen);
      delete this.peerLastEvent[longestUnseen];
    }
  }

  /** When a valid event or snapshot part from each origin last arrived (the most recent MAX_PEERS_TRACKED origins). */
  lastEvents(): ReadonlyMap<string, Date> {
    return this.peersSeen;
  }

  async start(): Promise<void> {
    this.inbox?.open((topic, payload, source, retained) => this.handle(topic, payload, source, retained));
  }

  async stop(): Promise<void> {
    this.inbox?.close();
    this.refusals.close();
  }

  status(): PartStatus {
    const { received, accepted, ownSkipped } = this.counts;
    return {
      kind: 'events',
      problems: [],
      measures: {
        received: counter('MQTT messages received on f2b/+/+', received),
        accepted: counter('valid events handed to at least one sink', accepted),
        own_skipped: counter("this host's own events, not applied again", ownSkipped),
        refused: counted('messages refused before any sink, by reason', 'reason', this.refusals.byReason()),
        peer_last_event: { help: 'when a valid event from this origin last arrived', type: 'gauge', unit: 'timestamp', label: 'origin', values: this.peerLastEvent },
      },
      details: {},
    };
  }
}
