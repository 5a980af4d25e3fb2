import net from 'node:net';
import { decodeReply, encodeCommand, isPyException, type PyException } from './pickle.js';
import { ReplySplitter } from './reply-splitter.js';
import { waitAtMost } from '../wait-at-most.js';

/**
 * - unavailable: cannot reach fail2ban, or the connection dropped before it answered
 * - timeout: fail2ban did not answer in time (the connection is reset)
 * - rejected: fail2ban answered with an exception (unknown jail, bad command, ...)
 * - protocol: the reply could not be understood
 */
export type Fail2banErrorKind = 'unavailable' | 'timeout' | 'rejected' | 'protocol';

export class Fail2banError extends Error {
  override name = 'Fail2banError';
  readonly kind: Fail2banErrorKind;
  readonly socketPath: string;
  readonly command: readonly string[];
  /** The exception fail2ban answered with, for kind 'rejected'. */
  readonly exception?: PyException;
  /** The node:net error code (ENOENT, ECONNREFUSED, EACCES, ...), when there was one. */
  readonly code?: string;

  constructor(
    kind: Fail2banErrorKind,
    message: string,
    details: { socketPath: string; command: readonly string[]; exception?: PyException; code?: string; cause?: unknown },
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.kind = kind;
    this.socketPath = details.socketPath;
    this.command = details.command;
    if (details.exception) this.exception = details.exception;
    if (details.code) this.code = details.code;
  }
}

export interface Fail2banClientOptions {
  /**
   * How long fail2ban may take to answer one command, in ms (default 10,000). The clock starts
   * when the command reaches the head of the queue, i.e. when fail2ban can start on it, so a deep
   * pipeline does not eat into later commands' time. A ban in a jail with a shell action costs
   * about 5 ms, so 1,000 addresses in such a jail take about 5 s.
   */
  timeoutMs?: number;
}

/** banIps/unbanIps split larger batches into commands of at most this many addresses. */
export const MAX_ADDRESSES_PER_COMMAND = 1000;

interface Pending {
  readonly args: readonly string[];
  resolve(value: unknown): void;
  reject(error: Error): void;
}

interface Connection {
  readonly socket: net.Socket;
  /** Sent and not yet answered, oldest first; fail2ban answers in order. */
  readonly queue: Pending[];
  /** What arrived of the replies. */
  readonly replies: ReplySplitter;
  connected: boolean;
  dead: boolean;
  timer?: NodeJS.Timeout;
}

/**
 * One persistent connection to fail2ban's unix socket, opened on the first command and reopened
 * on the next command after it drops. Commands are pipelined and answered in order. A command
 * that was sent when the connection dropped is rejected, never retried: it may or may not have
 * been applied, and only the caller knows whether repeating it is safe.
 */
export class Fail2banClient {
  readonly socketPath: string;
  private readonly timeoutMs: number;
  private conn: Connection | null = null;
  private readonly inflight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(socketPath: string, options: Fail2banClientOptions = {}) {
    this.socketPath = socketPath;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    if (!(this.timeoutMs > 0)) throw new RangeError(`Fail2banClient: timeoutMs must be > 0, got ${options.timeoutMs}`);
  }

  /**
   * Sends one command (e.g. ['set', 'sshd', 'banip', '1.2.3.4']) and resolves with fail2ban's
   * result. Rejects with Fail2banError, or with PickleError for an argument containing '<F2B_'.
   */
  command(args: readonly string[]): Promise<unknown> {
    const promise = this.send(args);
    this.inflight.add(promise);
    const forget = () => this.inflight.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  private async send(args: readonly string[]): Promise<unknown> {
    if (this.closed) {
      throw new Fail2banError('unavailable', `fail2ban client for ${this.socketPath} was closed; create a new one`, {
        socketPath: this.socketPath,
        command: args,
      });
    }
    const frame = encodeCommand([...args]);
    const conn = this.conn ?? this.connect();
    return new Promise<unknown>((resolve, reject) => {
      conn.queue.push({ args: [...args], resolve, reject });
      if (conn.queue.length === 1) this.arm(conn);
      conn.socket.ref();
      conn.socket.write(frame);
    });
  }

  async ping(): Promise<void> {
    const reply = await this.command(['ping']);
    if (reply !== 'pong') throw this.protocolError(['ping'], `expected 'pong', got ${show(reply)}`);
  }

  /**
   * Bans the addresses in `jail`; resolves with how many were not banned before. fail2ban
   * stores any string as a ban, so callers validate and canonicalise first. Not atomic: if a
   * later command of a large batch fails, earlier ones stay applied (the error says how many).
   * An empty batch sends nothing.
   */
  banIps(jail: string, ips: readonly string[]): Promise<number> {
    return this.setInChunks(jail, 'banip', ips);
  }

  /**
   * Unbans the addresses in `jail`; resolves with how many were banned before.
   *
   * Measured on fail2ban 1.0.2: `set J unbanip a b c` where b is not banned unbans a and c,
   * skips b silently and answers 2. Only with `--report-absent` as the first address does it
   * raise ValueError("not banned: [...]") (after unbanning the others). So a batch with
   * addresses that are not banned needs no filtering, and addresses starting with '-' are
   * refused so that none can turn into that flag. An empty `unbanip` raises IndexError, so an
   * empty batch sends nothing.
   */
  unbanIps(jail: string, ips: readonly string[]): Promise<number> {
    return this.setInChunks(jail, 'unbanip', ips);
  }

  /** The addresses currently banned in `jail`, as fail2ban stores them (normalised, e.g. CIDR). */
  async banned(jail: string): Promise<string[]> {
    const args = ['get', jail, 'banned'];
    const reply = await this.command(args);
    if (!Array.isArray(reply) || !reply.every((ip) => typeof ip === 'string')) {
      throw this.protocolError(args, `expected a list of addresses, got ${show(reply)}`);
    }
    return reply as string[];
  }

  async jailExists(jail: string): Promise<boolean> {
    try {
      // `get J bantime` is cheap; `status J` would carry the jail's whole ban list.
      await this.command(['get', jail, 'bantime']);
      return true;
    } catch (error) {
      if (error instanceof Fail2banError && error.exception?.pyException === 'fail2ban.exceptions.UnknownJailException') {
        return false;
      }
      throw error;
    }
  }

  /** Names of the running jails, from `status`. */
  async jails(): Promise<string[]> {
    const args = ['status'];
    const reply = await this.command(args);
    // [('Number of jail', 2), ('Jail list', 'sshd, sshd-sync')]
    const entry = Array.isArray(reply)
      ? reply.find((item): item is [string, string] => Array.isArray(item) && item[0] === 'Jail list' && typeof item[1] === 'string')
      : undefined;
    if (!entry) throw this.protocolError(args, `expected a 'Jail list' entry, got ${show(reply)}`);
    return entry[1].split(',').map((name) => name.trim()).filter((name) => name !== '');
  }

  /** Waits for commands already sent (at most `deadlineMs`), then closes the connection. Later commands are refused. */
  async close(deadlineMs = Infinity): Promise<void> {
    this.closed = true;
    await waitAtMost(Promise.allSettled([...this.inflight]), deadlineMs);
    const conn = this.conn;
    if (conn) this.drop(conn, (pending) => this.closedError(pending));
  }

  private async setInChunks(jail: string, action: 'banip' | 'unbanip', ips: readonly string[]): Promise<number> {
    refuseOptionLike(ips);
    let total = 0;
    for (let start = 0; start < ips.length; start += MAX_ADDRESSES_PER_COMMAND) {
      const args = ['set', jail, action, ...ips.slice(start, start + MAX_ADDRESSES_PER_COMMAND)];
      let reply: unknown;
      try {
        reply = await this.command(args);
      } catch (error) {
        if (start === 0 || !(error instanceof Fail2banError)) throw error;
        throw new Fail2banError(
          error.kind,
          `${error.message} (the first ${start} of ${ips.length} addresses were already sent in earlier commands: ${total} changed)`,
          { socketPath: this.socketPath, command: error.command, ...optional(error), cause: error },
        );
      }
      if (typeof reply !== 'number' || !Number.isInteger(reply) || reply < 0) {
        throw this.protocolError(args, `expected a count, got ${show(reply)}`);
      }
      total += reply;
    }
    return total;
  }

  private connect(): Connection {
    const socket = net.createConnection({ path: this.socketPath });
    const conn: Connection = { socket, queue: [], replies: new ReplySplitter(), connected: false, dead: false };
    socket.on('connect', () => {
      conn.connected = true;
    });
    socket.on('data', (chunk: Buffer) => this.receive(conn, chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      this.drop(conn, (pending) => this.socketError(pending, error, conn.connected));
    });
    // 'end' comes before 'close'; dropping there keeps new commands off a half-closed socket.
    socket.on('end', () => this.drop(conn, (pending) => this.closedByServer(pending)));
    socket.on('close', () => this.drop(conn, (pending) => this.closedByServer(pending)));
    this.conn = conn;
    return conn;
  }

  private receive(conn: Connection, chunk: Buffer): void {
    if (conn.dead) return;
    for (const body of conn.replies.push(chunk)) {
      const pending = conn.queue.shift();
      if (!pending) {
        this.drop(conn, (p) => this.protocolError(p.args, 'fail2ban sent a reply that no command was waiting for'));
        return;
      }
      let value: unknown;
      try {
        value = decodeReply(body);
      } catch (error) {
        pending.reject(this.protocolError(pending.args, `garbled reply (${(error as Error).message})`, error));
        // The marker may have been inside the reply, so later replies cannot be trusted to line up.
        this.drop(conn, (p) =>
          this.protocolError(p.args, 'connection reset after a garbled reply to an earlier command; this command may or may not have been applied'),
        );
        return;
      }
      if (conn.queue.length === 0) conn.socket.unref();
      this.arm(conn);
      this.settle(pending, value);
    }
  }

  private settle(pending: Pending, value: unknown): void {
    if (Array.isArray(value) && value.length === 2 && (value[0] === 0 || value[0] === 1)) {
      if (value[0] === 0) pending.resolve(value[1]);
      else pending.reject(this.rejectedError(pending.args, value[1]));
      return;
    }
    if (typeof value === 'string' && value.startsWith('ERROR')) {
      pending.reject(
        this.protocolError(
          pending.args,
          `fail2ban could not read the command (${value}); syncfail2ban and this fail2ban version disagree about the socket protocol`,
        ),
      );
      return;
    }
    pending.reject(this.protocolError(pending.args, `expected (code, result), got ${show(value)}`));
  }

  /** (Re)starts the timeout for the command at the head of the queue. */
  private arm(conn: Connection): void {
    clearTimeout(conn.timer);
    conn.timer = undefined;
    if (conn.queue.length === 0) return;
    conn.timer = setTimeout(() => {
      this.drop(conn, (pending, index) =>
        index === 0
          ? new Fail2banError(
              'timeout',
              `fail2ban at ${this.socketPath} did not answer ${describe(pending.args)} within ${this.timeoutMs} ms; ` +
                'connection reset. fail2ban may be hung or busy (slow ban actions?); raise the timeout if this is expected',
              { socketPath: this.socketPath, command: pending.args },
            )
          : new Fail2banError(
              'timeout',
              `connection to fail2ban at ${this.socketPath} was reset because an earlier command timed out; ` +
                `${describe(pending.args)} may or may not have been applied`,
              { socketPath: this.socketPath, command: pending.args },
            ),
      );
    }, this.timeoutMs);
  }

  /** Ends a connection once and rejects everything still waiting on it. */
  private drop(conn: Connection, makeError: (pending: Pending, index: number) => Error): void {
    if (conn.dead) return;
    conn.dead = true;
    clearTimeout(conn.timer);
    conn.socket.destroy();
    if (this.conn === conn) this.conn = null;
    const waiting = conn.queue.splice(0);
    waiting.forEach((pending, index) => pending.reject(makeError(pending, index)));
  }

  private socketError(pending: Pending, error: NodeJS.ErrnoException, connected: boolean): Fail2banError {
    const code = error.code ?? 'unknown error';
    const path = this.socketPath;
    const hint = 'Is fail2ban running? Is the socket path right (fail2ban_socket)?';
    let message: string;
    if (connected) {
      message = `lost the connection to fail2ban at ${path} (${code}) before it answered ${describe(pending.args)}; the command may or may not have been applied`;
    } else if (code === 'ENOENT') {
      message = `cannot connect to fail2ban: socket ${path} does not exist (ENOENT). ${hint}`;
    } else if (code === 'ECONNREFUSED') {
      message = `cannot connect to fail2ban: nothing is listening on socket ${path} (ECONNREFUSED). ${hint}`;
    } else if (code === 'EACCES' || code === 'EPERM') {
      message = `cannot connect to fail2ban: permission denied on socket ${path} (${code}). Run as root or as the fail2ban socket's owner`;
    } else if (code === 'ENOTSOCK') {
      message = `cannot connect to fail2ban: ${path} is not a socket (ENOTSOCK). Is the socket path right (fail2ban_socket)?`;
    } else {
      message = `cannot connect to fail2ban socket ${path} (${code}: ${error.message}). ${hint}`;
    }
    return new Fail2banError('unavailable', message, { socketPath: path, command: pending.args, code, cause: error });
  }

  private closedByServer(pending: Pending): Fail2banError {
    return new Fail2banError(
      'unavailable',
      `fail2ban at ${this.socketPath} closed the connection before answering ${describe(pending.args)} ` +
        '(stopped or restarting?); the command may or may not have been applied. The next command reconnects',
      { socketPath: this.socketPath, command: pending.args },
    );
  }

  private closedError(pending: Pending): Fail2banError {
    return new Fail2banError('unavailable', `fail2ban client for ${this.socketPath} was closed`, {
      socketPath: this.socketPath,
      command: pending.args,
    });
  }

  private rejectedError(args: readonly string[], exception: unknown): Fail2banError {
    const where = `(${describe(args)} on ${this.socketPath})`;
    if (!isPyException(exception)) {
      return new Fail2banError('rejected', `fail2ban rejected ${describe(args)}: ${show(exception)} ${where}`, {
        socketPath: this.socketPath,
        command: args,
      });
    }
    const shortName = exception.pyException.slice(exception.pyException.lastIndexOf('.') + 1);
    const message =
      shortName === 'UnknownJailException'
        ? `fail2ban: jail '${String(exception.args[0])}' does not exist ${where}; check the jail name against \`fail2ban-client status\``
        : `fail2ban rejected the command: ${shortName}(${exception.args.map(show).join(', ')}) ${where}`;
    return new Fail2banError('rejected', message, { socketPath: this.socketPath, command: args, exception });
  }

  private protocolError(args: readonly string[], what: string, cause?: unknown): Fail2banError {
    return new Fail2banError('protocol', `fail2ban protocol error for ${describe(args)} on ${this.socketPath}: ${what}`, {
      socketPath: this.socketPath,
      command: args,
      cause,
    });
  }
}

function refuseOptionLike(ips: readonly string[]): void {
  const bad = ips.find((ip) => typeof ip !== 'string' || ip.startsWith('-'));
  if (bad !== undefined) {
    throw new RangeError(`refusing to send ${show(bad)} to fail2ban as an address: it would be read as an option`);
  }
}

function optional(error: Fail2banError): { exception?: PyException; code?: string } {
  return { ...(error.exception ? { exception: error.exception } : {}), ...(error.code ? { code: error.code } : {}) };
}

/** A command for messages: long ones (batches of addresses) are abbreviated. */
function describe(args: readonly string[]): string {
  const shown = args.slice(0, 4).join(' ');
  return args.length > 4 ? `"${shown} ... (+${args.length - 4} more)"` : `"${shown}"`;
}

/** Roughly Python's repr, for messages only. */
function show(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 200 ? `${value.slice(0, 200)}...` : value}'`;
  if (Array.isArray(value)) {
    const items = value.slice(0, 10).map(show).join(', ');
    return `[${items}${value.length > 10 ? `, ... (${value.length} items)` : ''}]`;
  }
  if (value === null) return 'None';
  if (isPyException(value)) return `${value.pyException}(${value.args.map(show).join(', ')})`;
  if (value instanceof Map) return `{dict of ${value.size}}`;
  return String(value);
}
