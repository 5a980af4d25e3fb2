import type { Socket } from 'node:net';
import type { Logger } from '../../src/log.js';
import type { NeverBanList } from '../../src/never-ban.js';
import { Refusals } from '../../src/refusals.js';
import { counted, counter, gauge, type PartStatus } from '../../src/status.js';
import type { Part } from '../../src/part.js';
import { PrivateSocketServer } from '../../src/reporting/private-socket.js';
import { MAX_LINE_BYTES, parseActionLine, type ActionEvent, type LineResult } from './action-line.js';
import type { Outbox } from './outbox.js';

/** One connection per jail running the Python action is usual; more is a misbehaving client. */
const MAX_CONNECTIONS = 256;

/**
 * Where fail2ban's Python action (etc/fail2ban/action.d/syncfail2ban.py) hands this host's
 * bans to the agent: a unix socket only root can use (mode 0600 in a 0700 directory), the
 * line protocol of action-line.ts. Every line is validated and answered in order: `ok` once
 * the event is in the outbox, `refused <reason>: <detail>` otherwise (counted by reason and
 * logged without flooding); nothing a client sends can stop the agent. A socket that cannot
 * be made is a problem in the status: this host's bans are then not published.
 */
export class ActionSocket implements Part {
  private readonly server: PrivateSocketServer;
  private readonly refusals: Refusals;
  private accepted = 0;
  /** The outbox refused events since it last had room: logged once. */
  private full = false;

  constructor(
    path: string,
    /** The sync jails of [jails]: events of theirs would be a loop. */
    private readonly syncJails: ReadonlySet<string>,
    /** Bans every agent would refuse are not published (as syncfail2ban-client does); unbans pass. */
    private readonly neverBan: NeverBanList,
    private readonly outbox: Outbox,
    /** Called after events were added to the outbox. */
    private readonly added: () => void,
    private readonly log: Logger,
  ) {
    this.refusals = new Refusals(log);
    this.server = new PrivateSocketServer({ path, key: 'action_socket', program: 'syncfail2ban', serve: (socket) => this.serve(socket), maxConnections: MAX_CONNECTIONS });
  }

  async start(): Promise<void> {
    const { server, log } = this;
    const problem = await server.listen();
    if (!problem) {
      log.debug({ actionSocket: server.path }, 'action socket ready');
      return;
    }
    log.error({ actionSocket: server.path }, `no action socket (fail2ban's syncfail2ban.py action cannot hand over bans): ${problem.what}; fix: ${problem.fix}`);
  }

  async stop(): Promise<void> {
    this.refusals.close();
    await this.server.close();
  }

  status(): PartStatus {
    const { problem, path } = this.server;
    return {
      kind: 'action_socket',
      problems: problem ? [{ what: `no action socket, so fail2ban's syncfail2ban.py action cannot hand over this host's bans: ${problem.what}`, fix: problem.fix }] : [],
      measures: {
        accepted: counter("events taken from fail2ban's action into the outbox", this.accepted),
        refused: counted('lines refused on the action socket, by reason', 'reason', this.refusals.byReason()),
        connections: gauge('connections from fail2ban (one per jail with the action)', this.server.connections),
      },
      details: { socket: path },
    };
  }

  private serve(socket: Socket): void {
    let pending = '';
    /** The rest of a line that was too long is skipped, up to its end. */
    let skipping = false;
    socket.on('data', (chunk: Buffer) => {
      // Latin-1 keeps one character per byte: lengths are byte counts, and anything not ASCII fails validation.
      pending += chunk.toString('latin1');
      const lines = pending.split('\n');
      pending = lines.pop()!;
      const replies: string[] = [];
      const events: ActionEvent[] = [];
      /** Per event taken, the index of its reply: `ok` unless the outbox is full. */
      const eventReplies: number[] = [];
      for (const line of lines) {
        if (skipping) {
          skipping = false;
          continue;
        }
        const parsed = parseActionLine(line, this.syncJails);
        const result = parsed.ok ? this.neverBanRefusal(parsed.event) ?? parsed : parsed;
        if (result.ok) {
          eventReplies.push(replies.push('ok') - 1);
          events.push(result.event);
        } else {
          this.refusals.refuse(result.reason, result.detail, { socket: this.server.path });
          replies.push(`refused ${result.reason}: ${result.detail}`);
        }
      }
      if (pending.length > MAX_LINE_BYTES) {
        // Answered once, however many chunks the line still takes.
        if (!skipping) {
          this.refusals.refuse('oversized', `a line longer than ${MAX_LINE_BYTES} bytes`, { socket: this.server.path });
          replies.push(`refused oversized: a line longer than ${MAX_LINE_BYTES} bytes`);
          skipping = true;
        }
        pending = '';
      }
      if (events.length > 0) {
        const taken = this.outbox.add(events);
        this.accepted += taken;
        for (const index of eventReplies.slice(taken)) replies[index] = `refused outbox-full: the outbox holds ${this.outbox.limit} events the broker has not taken`;
        if (taken < events.length && !this.full) {
          this.log.error(`the outbox is full (${this.outbox.limit} events the broker has not taken): this host's new bans are dropped, counted, until it drains; then run "syncfail2ban-client -f <jail>"`);
        }
        this.full = taken < events.length;
        if (taken > 0) this.added();
      }
      if (replies.length > 0) socket.write(`${replies.join('\n')}\n`);
    });
  }

  private neverBanRefusal(event: ActionEvent): LineResult | undefined {
    const reason = event.action === 'ban' ? this.neverBan.reason(event.address) : null;
    return reason === null ? undefined : { ok: false, reason: 'never-ban', detail: `ban of ${event.address.text} in ${event.jail} not published: ${reason}; every agent would refuse it` };
  }
}
