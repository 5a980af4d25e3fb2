import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

/** One run of a program: how it ended, or why it could not start. */
export type ProcessRun =
  | { kind: 'exited'; code: number | null; stdout: Buffer; stderr: string }
  | { kind: 'timed-out' }
  | { kind: 'not-started'; errno: string | undefined; message: string };

/** stderr kept at most (its end): nft repeats the script's lines under each error. */
const STDERR_KEPT = 64 * 1024;

/**
 * Runs `command` with `args` (an argument array, never a shell), `input` on its stdin, and
 * kills it after `timeoutMs` or when `signal` aborts. Whoever calls this forks: see NftHelper
 * for why the agent does not.
 */
export function runProcess(command: readonly string[], args: readonly string[], input: string | Buffer, env: NodeJS.ProcessEnv, timeoutMs: number, signal?: AbortSignal): Promise<ProcessRun> {
  const [program, ...leading] = command as [string, ...string[]];
  const stdin = (input.length === 0 ? undefined : scriptFile(input)) ?? 'pipe';
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
    child.stdin?.end(input);
  });
}

/**
 * The script in a file nft reads as its stdin at its own pace (open, its name already gone),
 * or undefined when no file can be written (the pipe then). Through a pipe, nft waited for
 * the agent to write each 64 KiB of a batch of 25,000, while the agent was busy taking the
 * next changes.
 */
function scriptFile(script: string | Buffer): number | undefined {
  let dir: string | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'syncfail2ban-nft-'));
    const path = join(dir, 'script');
    writeFileSync(path, script, { mode: 0o600, flag: 'wx' });
    return openSync(path, 'r');
  } catch {
    return undefined;
  } finally {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}
