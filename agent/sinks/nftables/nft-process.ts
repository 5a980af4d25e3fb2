import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

/** One run of a program: how it ended, or why it could not start. */
export type ProcessRun =
  | { kind: 'exited'; code: number | null; stdout: Buffer; stderr: string }
  | { kind: 'timed-out' }
  | { kind: 'not-started'; errno: string | undefined; message: string }
  /** The script file was gone or unreadable when the run was to start. */
  | { kind: 'no-script'; message: string };

/**
 * What goes on the program's stdin: a script file it reads at its own pace, or (when no file
 * could be written) bytes through a pipe. Through a pipe, nft waited for the agent to write
 * each 64 KiB of a batch of 25,000 while the agent was busy taking the next changes; sent to
 * the helper, a batch crossed its channel in as many turns of the agent's event loop.
 */
export type ScriptSource = { file: string } | { bytes: string | Buffer } | undefined;

/** stderr kept at most (its end): nft repeats the script's lines under each error. */
const STDERR_KEPT = 64 * 1024;

/** The script in a file of its own (a private directory, mode 0600), or as bytes when none can be written there; none for an empty one. */
export function scriptSource(script: string | Buffer): ScriptSource {
  if (script.length === 0) return undefined;
  let dir: string | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'syncfail2ban-nft-'));
    const file = join(dir, 'script');
    writeFileSync(file, script, { mode: 0o600, flag: 'wx' });
    return { file };
  } catch {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    return { bytes: script };
  }
}

/** Removes a script's file, if it is still there (the run opens it and removes its name). */
export function discardScript(source: ScriptSource): void {
  if (source && 'file' in source) rmSync(dirname(source.file), { recursive: true, force: true });
}

/** runProcess with `script` on the program's stdin (see ScriptSource). */
export async function runWithScript(command: readonly string[], args: readonly string[], script: string | Buffer, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ProcessRun> {
  const source = scriptSource(script);
  try {
    return await runProcess(command, args, source, env, timeoutMs);
  } finally {
    discardScript(source);
  }
}

/**
 * Runs `command` with `args` (an argument array, never a shell), the script on its stdin, and
 * kills it after `timeoutMs` or when `signal` aborts. Whoever calls this forks: see NftHelper
 * for why the agent does not.
 */
export function runProcess(command: readonly string[], args: readonly string[], source: ScriptSource, env: NodeJS.ProcessEnv, timeoutMs: number, signal?: AbortSignal): Promise<ProcessRun> {
  const [program, ...leading] = command as [string, ...string[]];
  let stdin: number | 'pipe' = 'pipe';
  if (source && 'file' in source) {
    try {
      stdin = openSync(source.file, 'r');
    } catch (error) {
      return Promise.resolve({ kind: 'no-script', message: (error as Error).message });
    } finally {
      discardScript(source);
    }
  }
  return new Promise((resolve) => {
    let child: ChildProcessByStdio<Writable | null, Readable, Readable>;
    try {
      child = spawn(program, [...leading, ...args], { stdio: [stdin, 'pipe', 'pipe'], env, ...(signal ? { signal } : {}) }) as ChildProcessByStdio<Writable | null, Readable, Readable>;
    } finally {
      if (typeof stdin === 'number') closeSync(stdin);
    }
    const stdout: Buffer[] = [];
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-STDERR_KEPT)));
    // nft exits without reading stdin when it cannot start its work (no permission): not our failure.
    child.stdin?.on('error', () => undefined);
    child.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ kind: 'not-started', errno: error.code, message: error.message });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve(timedOut ? { kind: 'timed-out' } : { kind: 'exited', code, stdout: Buffer.concat(stdout), stderr });
    });
    child.stdin?.end(source && 'bytes' in source ? source.bytes : undefined);
  });
}
