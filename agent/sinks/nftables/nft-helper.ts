import { fork, type ChildProcess } from 'node:child_process';
import type { Logger } from '../../../src/log.js';
import { LogThrottle } from '../../../src/log-throttle.js';
import { shippedFile } from '../../../src/shipped-file.js';
import { discardScript, runWithScript, scriptSource, type ProcessRun, type ScriptSource } from './nft-process.js';

/** A run asked of the helper: the arguments of runProcess. */
export interface HelperRequest {
  id: number;
  command: readonly string[];
  args: readonly string[];
  source: ScriptSource;
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
}

export interface HelperReply {
  id: number;
  run: ProcessRun;
}

/** Where the checkout's dist/ and an installed (bundled) tree alike keep it: see scripts/bundle-programs.mjs. */
const HELPER_MAIN = shippedFile('dist/agent/sinks/nftables/nft-helper-main.js');
/** The helper holds one script or listing at a time: a small young generation keeps it small (about 20 MB besides the node binary it shares). */
const HELPER_FLAGS = ['--max-semi-space-size=1'];
/** How long past a run's own timeout (the helper kills nft then) an answer may take before the helper is taken for hung. */
const ANSWER_GRACE_MS = 10_000;

interface Waiting {
  resolve(run: ProcessRun): void;
  reject(error: Error): void;
  /** Runs it from the agent itself: the helper went before it answered. */
  runHere(): void;
}

/**
 * Starts nft from a small long-lived helper process instead of forking the agent. A fork
 * write-protects every page of the parent until the parent writes it again, each such write a
 * page fault: on the virtual machines measured here, writing 100 MB of heap after one spawn
 * took 25,600 faults and 460 ms. The agent, with 100,000s of holdings in 100s of MB, ran nft
 * for every batch and every look at the table (each CHECK_MS), and paid that on its event loop
 * each time. The helper is forked once, while the agent is small, and forks nft at its own size.
 *
 * A run the helper cannot answer because it is gone (it could not start, or exited) runs from
 * the agent itself, so nothing waits on it; the next run starts a new helper. The script goes
 * as a file the agent wrote (scriptSource), not through the channel.
 */
export class NftHelper {
  private child: ChildProcess | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private closed = false;
  private readonly throttle = new LogThrottle();

  /** `main`: the helper's script (tests give one that cannot run). */
  constructor(
    private readonly log?: Logger,
    private readonly main = HELPER_MAIN,
  ) {}

  /** runWithScript, in the helper. */
  run(command: readonly string[], args: readonly string[], script: string | Buffer, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ProcessRun> {
    if (this.closed) return Promise.reject(new Error('the nft helper is closed: the agent is stopping'));
    const child = this.child ?? this.start();
    if (!child) return runWithScript(command, args, script, env, timeoutMs);
    const source = scriptSource(script);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const settle = () => {
        clearTimeout(timer);
        this.waiting.delete(id);
        discardScript(source);
      };
      const timer = setTimeout(() => {
        settle();
        resolve({ kind: 'timed-out' });
        this.lost(child, `did not answer within ${(timeoutMs + ANSWER_GRACE_MS) / 1000} s`);
      }, timeoutMs + ANSWER_GRACE_MS);
      this.waiting.set(id, {
        resolve: (run) => (settle(), resolve(run)),
        reject: (error) => (settle(), reject(error)),
        runHere: () => (settle(), resolve(runWithScript(command, args, script, env, timeoutMs))),
      });
      child.send({ id, command, args, source, env, timeoutMs } satisfies HelperRequest, (error: Error | null) => {
        if (error) this.lost(child, `could not be written to (${error.message})`);
      });
    });
  }

  /** Ends the helper (it ends what it still runs); runs not answered yet fail. */
  close(): void {
    this.closed = true;
    const child = this.child;
    this.child = undefined;
    if (child?.connected) child.disconnect();
    for (const waiting of [...this.waiting.values()]) waiting.reject(new Error('the agent stopped before nft answered'));
  }

  /** A new helper, or undefined when the system refuses another process now. */
  private start(): ChildProcess | undefined {
    let child: ChildProcess;
    try {
      child = fork(this.main, [], { execArgv: HELPER_FLAGS, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    } catch (error) {
      if (this.throttle.pass('start') !== null) this.log?.warn({ sink: 'nftables' }, `the nft helper process could not be started (${(error as Error).message}); nft runs from the agent meanwhile`);
      return undefined;
    }
    this.child = child;
    child.on('message', (reply: HelperReply) => this.waiting.get(reply.id)?.resolve(reply.run));
    child.once('error', (error) => this.lost(child, `failed (${error.message})`));
    child.once('exit', (code, signal) => this.lost(child, `exited (${signal ?? `code ${code}`})`));
    // Neither the helper nor its channel keeps the agent running; a run under way has its timer.
    child.unref();
    child.channel?.unref();
    return child;
  }

  /** The helper went or hangs: what it did not answer runs here, and the next run starts a new one. */
  private lost(child: ChildProcess, why: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    child.kill('SIGKILL');
    if (this.throttle.pass(why) !== null) this.log?.warn({ sink: 'nftables' }, `the nft helper process ${why}; its runs go on from the agent, and the next starts a new helper`);
    for (const waiting of [...this.waiting.values()]) waiting.runHere();
  }
}
