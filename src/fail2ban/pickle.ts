/**
 * The two halves of fail2ban's socket protocol that we need, hand-written:
 *
 * - encodeCommand: a request is a pickle of a list of strings followed by END_MARKER.
 * - decodeReply: a SAFE pickle reader. It is a small stack machine over a fixed set of
 *   opcodes and never imports or calls anything; class references become plain markers.
 *
 * Value mapping (Python -> JavaScript):
 *   None -> null, bool -> boolean, float -> number,
 *   int -> number (bigint when outside Number.MAX_SAFE_INTEGER),
 *   str -> string (invalid UTF-8, e.g. lone surrogates, becomes U+FFFD instead of failing),
 *   bytes -> Buffer, list and tuple -> array, set/frozenset -> Set,
 *   dict -> Map (not a plain object: keys may be ints or tuples, and '__proto__' stays data),
 *   a class reference -> { pyClass: 'module.name' },
 *   cls(*args) for builtins.str/int/float -> the plain value,
 *   cls(*args) for an exception class -> { pyException: 'module.Name', args: [...] }.
 * Anything else is a PickleError, as is malformed, truncated or hostile input.
 */

export class PickleError extends Error {
  override name = 'PickleError';
}

export const END_MARKER = Buffer.from('<F2B_END_COMMAND>', 'latin1');
const MARKER_PREFIX = '<F2B_';
/** PROTO 2, EMPTY_LIST, MARK; then BINUNICODE (4-byte length, UTF-8) per argument; APPENDS, STOP. */
const HEAD = Buffer.from([0x80, 0x02, 0x5d, 0x28]);
const BINUNICODE = 0x58;
const TAIL = Buffer.from([0x65, 0x2e]);

export interface PyClassRef {
  readonly pyClass: string;
}

export interface PyException {
  readonly pyException: string;
  readonly args: unknown[];
}

export function isPyClassRef(value: unknown): value is PyClassRef {
  return typeof value === 'object' && value !== null && typeof (value as PyClassRef).pyClass === 'string';
}

export function isPyException(value: unknown): value is PyException {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as PyException).pyException === 'string' &&
    Array.isArray((value as PyException).args)
  );
}

/**
 * Pickle protocol 2: PROTO 2, EMPTY_LIST, MARK, BINUNICODE per argument, APPENDS, STOP,
 * then END_MARKER. Throws PickleError for an argument that could desynchronise the stream.
 */
export function encodeCommand(args: string[]): Buffer {
  if (!Array.isArray(args) || args.length === 0) {
    throw new PickleError('cannot encode a fail2ban command: it needs at least one argument');
  }
  // One buffer for the whole command: a batch is thousands of addresses, and a pair of small
  // buffers for each kept the agent's young generation collecting while it encoded.
  let size = HEAD.length + TAIL.length + END_MARKER.length;
  args.forEach((arg, index) => {
    if (typeof arg !== 'string') {
      throw new PickleError(`cannot encode fail2ban command argument ${index + 1}: expected a string, got ${typeof arg}`);
    }
    if (arg.includes(MARKER_PREFIX)) {
      throw new PickleError(
        `refusing to send fail2ban command argument ${index + 1} (${JSON.stringify(shorten(arg))}): ` +
          `it contains '<F2B_', which fail2ban's socket protocol uses as a message delimiter`,
      );
    }
    size += 5 + Buffer.byteLength(arg, 'utf8');
  });
  const command = Buffer.allocUnsafe(size);
  let at = HEAD.copy(command, 0);
  for (const arg of args) {
    command[at] = BINUNICODE;
    const length = command.write(arg, at + 5, 'utf8');
    command.writeUInt32LE(length, at + 1);
    at += 5 + length;
  }
  at += TAIL.copy(command, at);
  // Length prefixes are binary, so the marker could in theory straddle a length and its text.
  if (command.subarray(0, at).includes(END_MARKER)) {
    throw new PickleError('refusing to send fail2ban command: its encoding contains the end-of-command marker');
  }
  END_MARKER.copy(command, at);
  return command;
}

function shorten(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Nesting deeper than this is refused; real fail2ban replies nest about 5 levels. */
export const MAX_DEPTH = 100;

/**
 * Decodes one reply pickle (without END_MARKER). Linear in the input; afterwards the result is
 * walked once to refuse cycles, absurd nesting and shared-reference blow-ups, so callers can
 * recurse over it safely.
 */
export function decodeReply(buf: Buffer): unknown {
  const value = new Machine(buf).run();
  checkShape(value, buf.length * 2 + 64);
  return value;
}

type Item = unknown;

class Machine {
  private pos = 0;
  private readonly stack: Item[] = [];
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, Item>();
  // Lists and tuples are both arrays; these tell them apart (the machine is short-lived).
  private readonly lists = new Set<unknown[]>();
  private readonly tuples = new Set<unknown[]>();

  constructor(private readonly buf: Buffer) {}

  run(): unknown {
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      switch (op) {
        case 0x80: {
          const proto = this.u8();
          if (proto > 5) this.fail(at, `unsupported pickle protocol ${proto}`);
          break;
        }
        case 0x95: // FRAME: only a buffering hint, but its length must be plausible
          this.length(this.u64(), at);
          break;
        case 0x2e: // STOP
          return this.finish(at);
        case 0x28: // MARK
          this.marks.push(this.stack.length);
          break;
        case 0x5d: { // EMPTY_LIST
          const list: unknown[] = [];
          this.lists.add(list);
          this.push(list);
          break;
        }
        case 0x61: { // APPEND
          const item = this.pop(at);
          this.list(at).push(item);
          break;
        }
        case 0x65: { // APPENDS
          const items = this.popMark(at);
          const list = this.list(at);
          for (const item of items) list.push(item);
          break;
        }
        case 0x7d: // EMPTY_DICT
          this.push(new Map<unknown, unknown>());
          break;
        case 0x73: { // SETITEM
          const value = this.pop(at);
          const key = this.pop(at);
          this.dict(at).set(key, value);
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark(at);
          if (items.length % 2 !== 0) this.fail(at, 'SETITEMS with an odd number of items');
          const dict = this.dict(at);
          for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1]);
          break;
        }
        case 0x8f: // EMPTY_SET
          this.push(new Set<unknown>());
          break;
        case 0x90: { // ADDITEMS
          const items = this.popMark(at);
          const set = this.peek(at);
          if (!(set instanceof Set)) this.fail(at, 'ADDITEMS on something that is not a set');
          for (const item of items) set.add(item);
          break;
        }
        case 0x91: // FROZENSET
          this.push(new Set(this.popMark(at)));
          break;
        case 0x29: // EMPTY_TUPLE
          this.push(this.tuple([]));
          break;
        case 0x85: // TUPLE1
        case 0x86: // TUPLE2
        case 0x87: { // TUPLE3
          const count = op - 0x84;
          if (this.stack.length - this.floor() < count) this.fail(at, `TUPLE${count} needs ${count} items on the stack`);
          const items = new Array<unknown>(count);
          for (let i = count - 1; i >= 0; i--) items[i] = this.stack.pop();
          this.push(this.tuple(items));
          break;
        }
        case 0x74: // TUPLE
          this.push(this.tuple(this.popMark(at)));
          break;
        case 0x4a: // BININT
          this.push(this.buf.readInt32LE(this.take(4)));
          break;
        case 0x4b: // BININT1
          this.push(this.u8());
          break;
        case 0x4d: // BININT2
          this.push(this.buf.readUInt16LE(this.take(2)));
          break;
        case 0x8a: // LONG1
          this.push(this.long(this.u8(), at));
          break;
        case 0x8b: { // LONG4
          const size = this.buf.readInt32LE(this.take(4));
          if (size < 0) this.fail(at, 'LONG4 with a negative length');
          if (size > 4096) this.fail(at, `LONG4 of ${size} bytes is too large to be a fail2ban value`);
          this.push(this.long(size, at));
          break;
        }
        case 0x47: // BINFLOAT (big-endian)
          this.push(this.buf.readDoubleBE(this.take(8)));
          break;
        case 0x8c: // SHORT_BINUNICODE
          this.push(this.text(this.u8(), at, 'utf8'));
          break;
        case 0x58: // BINUNICODE
          this.push(this.text(this.u32(), at, 'utf8'));
          break;
        case 0x8d: // BINUNICODE8
          this.push(this.text(this.length(this.u64(), at), at, 'utf8'));
          break;
        case 0x55: // SHORT_BINSTRING (a Python 2 str; Python 3 reads it as text)
          this.push(this.text(this.u8(), at, 'latin1'));
          break;
        case 0x54: // BINSTRING
          this.push(this.text(this.length(this.buf.readInt32LE(this.take(4)), at), at, 'latin1'));
          break;
        case 0x43: // SHORT_BINBYTES
          this.push(this.bytes(this.u8(), at));
          break;
        case 0x42: // BINBYTES
          this.push(this.bytes(this.u32(), at));
          break;
        case 0x8e: // BINBYTES8
          this.push(this.bytes(this.length(this.u64(), at), at));
          break;
        case 0x4e: // NONE
          this.push(null);
          break;
        case 0x88: // NEWTRUE
          this.push(true);
          break;
        case 0x89: // NEWFALSE
          this.push(false);
          break;
        case 0x94: // MEMOIZE
          this.memo.set(this.memo.size, this.peek(at));
          break;
        case 0x70: // PUT
          this.memo.set(this.decimalLine(at), this.peek(at));
          break;
        case 0x71: // BINPUT
          this.memo.set(this.u8(), this.peek(at));
          break;
        case 0x72: // LONG_BINPUT
          this.memo.set(this.u32(), this.peek(at));
          break;
        case 0x67: // GET
          this.push(this.recall(this.decimalLine(at), at));
          break;
        case 0x68: // BINGET
          this.push(this.recall(this.u8(), at));
          break;
        case 0x6a: // LONG_BINGET
          this.push(this.recall(this.u32(), at));
          break;
        case 0x93: { // STACK_GLOBAL
          const name = this.pop(at);
          const module = this.pop(at);
          if (typeof module !== 'string' || typeof name !== 'string') {
            this.fail(at, 'STACK_GLOBAL needs a module name and a class name as strings');
          }
          this.push(classRef(module, name));
          break;
        }
        case 0x63: { // GLOBAL
          const module = this.line(at);
          const name = this.line(at);
          this.push(classRef(module, name));
          break;
        }
        case 0x52: { // REDUCE
          const args = this.pop(at);
          const callable = this.pop(at);
          this.push(this.reduce(callable, args, at));
          break;
        }
        case 0x62: { // BUILD: only exceptions carry state in fail2ban replies; it is not needed
          this.pop(at);
          if (!isPyException(this.peek(at))) this.fail(at, 'BUILD on something that is not an exception');
          break;
        }
        default:
          this.fail(at, `unknown or unsupported opcode 0x${op.toString(16).padStart(2, '0')}`);
      }
    }
  }

  private finish(at: number): unknown {
    if (this.marks.length > 0) this.fail(at, 'STOP with an unclosed MARK');
    if (this.stack.length !== 1) this.fail(at, `STOP with ${this.stack.length} items on the stack instead of 1`);
    if (this.pos !== this.buf.length) this.fail(at, `${this.buf.length - this.pos} unexpected bytes after STOP`);
    return this.stack[0];
  }

  private reduce(callable: unknown, args: unknown, at: number): unknown {
    if (!isPyClassRef(callable)) this.fail(at, 'REDUCE on something that is not a class reference');
    if (!Array.isArray(args) || !this.tuples.has(args)) this.fail(at, `REDUCE of ${callable.pyClass} without an argument tuple`);
    const name = callable.pyClass;
    switch (name) {
      case 'builtins.str':
        if (args.length === 0) return '';
        if (args.length === 1 && typeof args[0] === 'string') return args[0];
        break;
      case 'builtins.int':
        if (args.length === 0) return 0;
        if (args.length === 1 && (typeof args[0] === 'number' || typeof args[0] === 'bigint')) return args[0];
        if (args.length === 1 && typeof args[0] === 'string' && /^\s*[+-]?\d{1,4300}\s*$/.test(args[0])) {
          return normaliseInt(BigInt(args[0].trim()));
        }
        break;
      case 'builtins.float':
        if (args.length === 1 && typeof args[0] === 'number') return args[0];
        break;
      default:
        if (isExceptionClass(name)) return { pyException: name, args: [...args] } satisfies PyException;
        this.fail(at, `refusing to reconstruct ${name}: only builtins str/int/float and exception classes are allowed`);
    }
    this.fail(at, `unexpected arguments for ${name}`);
  }

  private push(item: Item): void {
    this.stack.push(item);
  }

  /** Items above the innermost MARK belong to it; opcodes other than *S/TUPLE must not reach below. */
  private floor(): number {
    return this.marks.length > 0 ? this.marks[this.marks.length - 1]! : 0;
  }

  private pop(at: number): Item {
    if (this.stack.length <= this.floor()) this.fail(at, 'stack underflow');
    return this.stack.pop();
  }

  private peek(at: number): Item {
    if (this.stack.length <= this.floor()) this.fail(at, 'stack underflow');
    return this.stack[this.stack.length - 1];
  }

  private popMark(at: number): Item[] {
    const mark = this.marks.pop();
    if (mark === undefined) this.fail(at, 'no MARK to pop to');
    return this.stack.splice(mark, this.stack.length - mark);
  }

  private list(at: number): unknown[] {
    const target = this.peek(at);
    if (!Array.isArray(target) || !this.lists.has(target)) this.fail(at, 'APPEND(S) on something that is not a list');
    return target;
  }

  private dict(at: number): Map<unknown, unknown> {
    const target = this.peek(at);
    if (!(target instanceof Map)) this.fail(at, 'SETITEM(S) on something that is not a dict');
    return target;
  }

  private tuple(items: unknown[]): unknown[] {
    this.tuples.add(items);
    return items;
  }

  private recall(index: number, at: number): Item {
    if (!this.memo.has(index)) this.fail(at, `memo entry ${index} was never stored`);
    return this.memo.get(index);
  }

  private take(count: number): number {
    if (count > this.buf.length - this.pos) {
      throw new PickleError(`pickle truncated: needed ${count} more bytes at offset ${this.pos} of ${this.buf.length}`);
    }
    const start = this.pos;
    this.pos += count;
    return start;
  }

  private u8(): number {
    return this.buf[this.take(1)]!;
  }

  private u32(): number {
    return this.buf.readUInt32LE(this.take(4));
  }

  private u64(): bigint {
    return this.buf.readBigUInt64LE(this.take(8));
  }

  /** A declared length must fit in what is left of the input. */
  private length(size: bigint | number, at: number): number {
    const left = this.buf.length - this.pos;
    if (size < 0 || size > BigInt(left)) {
      this.fail(at, `declared length ${size} exceeds the ${left} bytes left in the reply`);
    }
    return Number(size);
  }

  private text(size: number, at: number, encoding: 'utf8' | 'latin1'): string {
    const start = this.take(this.length(size, at));
    return this.buf.toString(encoding, start, start + size);
  }

  private bytes(size: number, at: number): Buffer {
    const start = this.take(this.length(size, at));
    return Buffer.from(this.buf.subarray(start, start + size));
  }

  private long(size: number, at: number): number | bigint {
    const start = this.take(this.length(size, at));
    if (size === 0) return 0;
    let value = 0n;
    for (let i = start + size - 1; i >= start; i--) value = (value << 8n) | BigInt(this.buf[i]!);
    if (this.buf[start + size - 1]! & 0x80) value -= 1n << BigInt(size * 8);
    return normaliseInt(value);
  }

  private line(at: number): string {
    const end = this.buf.indexOf(0x0a, this.pos);
    if (end < 0) throw new PickleError(`pickle truncated: unterminated text line at offset ${at}`);
    const text = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return text;
  }

  private decimalLine(at: number): number {
    const text = this.line(at);
    if (!/^\d{1,10}$/.test(text)) this.fail(at, `bad memo index ${JSON.stringify(shorten(text))}`);
    return Number(text);
  }

  private fail(at: number, what: string): never {
    throw new PickleError(`bad pickle at offset ${at}: ${what}`);
  }
}

function normaliseInt(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

function classRef(module: string, name: string): PyClassRef {
  return { pyClass: `${module}.${name}` };
}

/** Naming only: the class is never looked up, so a wrong guess cannot do harm. */
function isExceptionClass(name: string): boolean {
  return /^[A-Za-z_][\w.]*\.\w*(Error|Exception)$/.test(name);
}

/**
 * Refuses cycles (a list that contains itself), nesting deeper than MAX_DEPTH and structures
 * whose shared references would make a naive walk visit more than `budget` nodes.
 * Iterative, so hostile depth cannot overflow the JavaScript stack.
 */
function checkShape(root: unknown, budget: number): void {
  const rootChildren = childrenOf(root);
  if (!rootChildren) return;
  const onPath = new Set<object>([root as object]);
  const frames: Array<{ node: object; children: unknown[]; next: number }> = [
    { node: root as object, children: rootChildren, next: 0 },
  ];
  let visits = 0;
  while (frames.length > 0) {
    const frame = frames[frames.length - 1]!;
    if (frame.next >= frame.children.length) {
      frames.pop();
      onPath.delete(frame.node);
      continue;
    }
    const child = frame.children[frame.next++];
    if (++visits > budget) throw new PickleError('reply refused: shared references expand to an unreasonably large value');
    const children = childrenOf(child);
    if (!children) continue;
    const node = child as object;
    if (onPath.has(node)) throw new PickleError('reply refused: it contains a reference cycle');
    if (frames.length >= MAX_DEPTH) throw new PickleError(`reply refused: nested deeper than ${MAX_DEPTH} levels`);
    onPath.add(node);
    frames.push({ node, children, next: 0 });
  }
}

function childrenOf(value: unknown): unknown[] | undefined {
  if (Array.isArray(value)) return value;
  if (value instanceof Map) {
    const children: unknown[] = [];
    for (const [key, item] of value) children.push(key, item);
    return children;
  }
  if (value instanceof Set) return [...value];
  if (isPyException(value)) return value.args;
  return undefined;
}
