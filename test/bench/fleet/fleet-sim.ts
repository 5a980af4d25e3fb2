import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../support/wait.js';
import type { Collected, FromWorker, SimHostSpec, ToWorker } from './protocol.js';

const WORKER = fileURLToPath(new URL('./sim-worker.js', import.meta.url));

/** The simulated hosts, spread over a few worker processes (sim-worker.ts). */
export class FleetSim {
  private constructor(
    private readonly workers: ChildProcess[],
    private readonly owner: Map<number, ChildProcess>,
    readonly size: number,
  ) {}

  /**
   * `count` hosts from 127.10.x.y, host i preferring broker port i modulo their number and
   * failing over to the next; resolves once every host is subscribed.
   */
  static async start(count: number, ports: number[], workerCount: number): Promise<FleetSim> {
    const specs: SimHostSpec[] = Array.from({ length: count }, (_, index) => ({
      index,
      localAddress: `127.10.${Math.floor(index / 250)}.${1 + (index % 250)}`,
      ports: ports.map((_, i) => ports[(index + i) % ports.length]!),
    }));
    const workers = Array.from({ length: workerCount }, () => fork(WORKER, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    const owner = new Map<number, ChildProcess>();
    const sim = new FleetSim(workers, owner, count);
    const ready = await Promise.all(
      workers.map((worker, w) => {
        const mine = specs.filter((spec) => spec.index % workerCount === w);
        for (const spec of mine) owner.set(spec.index, worker);
        return sim.ask(worker, { type: 'start', hosts: mine }, 'ready');
      }),
    );
    const failed = ready.flatMap((answer) => answer.failed);
    if (failed.length > 0) throw new Error(`simulated hosts could not subscribe: ${failed.slice(0, 5).join('; ')}`);
    return sim;
  }

  get pids(): number[] {
    return this.workers.map((worker) => worker.pid!);
  }

  ban(host: number, key: number, topic: string, payload: string): void {
    this.owner.get(host)!.send({ type: 'ban', host, key, topic, payload } satisfies ToWorker);
  }

  snapshot(host: number, topic: string, parts: string[]): void {
    this.owner.get(host)!.send({ type: 'snapshot', host, topic, parts } satisfies ToWorker);
  }

  /** Deliveries so far over every host, hosts subscribed now, snapshots every part of which a host has. */
  async count(): Promise<{ delivered: number; subscribed: number; snapshotsDone: number }> {
    const counts = await Promise.all(this.workers.map((worker) => this.ask(worker, { type: 'count' }, 'count')));
    return {
      delivered: counts.reduce((sum, c) => sum + c.delivered, 0),
      subscribed: counts.reduce((sum, c) => sum + c.subscribed, 0),
      snapshotsDone: counts.reduce((sum, c) => sum + c.snapshotsDone, 0),
    };
  }

  /** Waits until `done(count)` holds, or no delivery arrived for `quietMs` (then resolves false). */
  async settle(done: (count: Awaited<ReturnType<FleetSim['count']>>) => boolean, quietMs = 15_000): Promise<boolean> {
    let last = -1;
    let since = Date.now();
    let result = false;
    await waitFor(async () => {
      const count = await this.count();
      if (done(count)) return (result = true);
      if (count.delivered !== last) {
        last = count.delivered;
        since = Date.now();
      }
      return Date.now() - since > quietMs;
    }, 'the simulated hosts to receive everything or go quiet', 30 * 60_000);
    return result;
  }

  /** What every worker recorded since the last collect(), merged. */
  async collect(): Promise<Collected[]> {
    return (await Promise.all(this.workers.map((worker) => this.ask(worker, { type: 'collect' }, 'collected')))).map((answer) => answer.data);
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((worker) => this.ask(worker, { type: 'stop' }, 'stopped').catch(() => undefined)));
    for (const worker of this.workers) worker.kill();
  }

  private ask<T extends FromWorker['type']>(worker: ChildProcess, message: ToWorker, answer: T): Promise<Extract<FromWorker, { type: T }>> {
    return new Promise((resolve, reject) => {
      const onMessage = (reply: FromWorker) => {
        if (reply.type !== answer) return;
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        resolve(reply as Extract<FromWorker, { type: T }>);
      };
      const onExit = (code: number | null) => reject(new Error(`a simulated-host worker exited (${code})`));
      worker.on('message', onMessage);
      worker.once('exit', onExit);
      worker.send(message);
    });
  }
}
