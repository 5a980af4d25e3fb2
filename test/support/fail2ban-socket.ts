/**
 * Commands to private fail2ban servers through fail2ban's own client library (CSocket, what
 * fail2ban-client sends them with), from one long-lived python3 per test process.
 *
 * Why not run fail2ban-client each time: its Python start costs 0.1 s of CPU, and the tests'
 * polls (a ban in a sync jail, a server answering status) ran it about a thousand times per
 * suite, a seventh of the suite's CPU on two cores. The server receives the same command
 * either way; only the process start is shared.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';

/** One request per line in, one JSON reply per line out; each request in its own thread, so a slow one (100,000 bans) holds back no other. */
const HELPER = `
import json, sys, threading
from fail2ban.client.csocket import CSocket
out = threading.Lock()
def answer(line):
    request = json.loads(line)
    try:
        client = CSocket(request['socket'], timeout=request['timeout'])
        try:
            code, value = client.send(request['command'])
        finally:
            client.close()
        reply = {'id': request['id'], 'value': value} if code == 0 else {'id': request['id'], 'error': 'NOK: %r' % (value,)}
    except Exception as error:
        reply = {'id': request['id'], 'error': '%s: %s' % (type(error).__name__, error)}
    text = json.dumps(reply, default=str)
    with out:
        sys.stdout.write(text + '\\n')
        sys.stdout.flush()
for line in sys.stdin:
    threading.Thread(target=answer, args=(line,), daemon=True).start()
`;

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

let helper: { child: ChildProcessWithoutNullStreams; pending: Map<number, Pending> } | undefined;
let nextId = 0;

/** The Python that fail2ban-client runs with (its #! line), which has fail2ban's modules: not necessarily the python3 on PATH. */
function fail2banPython(): string {
  const client = (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'fail2ban-client')).find((path) => existsSync(path));
  const interpreter = client && /^#!\s*(\S+)/.exec(readFileSync(client, 'utf8').split('\n', 1)[0]!)?.[1];
  if (!interpreter) throw new Error('fail2ban-client is not on PATH (or has no #! line): is fail2ban installed?');
  return interpreter;
}

function start(): NonNullable<typeof helper> {
  const child = spawn(fail2banPython(), ['-c', HELPER], { stdio: ['pipe', 'pipe', 'pipe'] });
  const pending = new Map<number, Pending>();
  const started = { child, pending };
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2000);
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    const reply = JSON.parse(line) as { id: number; value?: unknown; error?: string };
    const request = pending.get(reply.id);
    pending.delete(reply.id);
    if (reply.error !== undefined) request?.reject(new Error(reply.error));
    else request?.resolve(reply.value);
  });
  const fail = (why: string) => {
    if (helper === started) helper = undefined;
    for (const request of pending.values()) request.reject(new Error(`the fail2ban client helper (python3) ${why}: ${stderr.trim()}`));
    pending.clear();
  };
  child.once('error', (error) => fail(`could not run: ${error.message}`));
  child.once('exit', (code, signal) => fail(`exited (code ${code}, signal ${signal})`));
  // It ends with its stdin when this process exits; it must not keep the process alive meanwhile.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as { unref?: () => void }).unref?.();
  return started;
}

/** Sends `command` to the fail2ban server at `socket`; resolves with its answer (fail2ban's value, as JSON), rejects with its error. */
export function fail2banCommand(socket: string, command: readonly string[], timeoutMs = 30_000): Promise<unknown> {
  helper ??= start();
  const { child, pending } = helper;
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`fail2ban at ${socket} did not answer ${command.join(' ')} within ${timeoutMs} ms`));
    }, timeoutMs);
    const settle = <T>(then: (value: T) => void) => (value: T) => {
      clearTimeout(timer);
      then(value);
    };
    pending.set(id, { resolve: settle(resolve), reject: settle(reject) });
    child.stdin.write(`${JSON.stringify({ id, socket, command, timeout: timeoutMs / 1000 })}\n`);
  });
}
