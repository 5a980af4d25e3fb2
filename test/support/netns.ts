/**
 * Private network namespaces for tests that change nftables or iptables (root only): the
 * host's own firewall and interfaces are never touched. A namespace lives as long as the
 * small process holding it (`unshare -n`); commands and whole agents enter it with nsenter.
 * Unix sockets (fail2ban's, the control socket) work across namespaces; TCP does not, so
 * everything that speaks MQTT to the processes inside runs inside too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { run, type RunResult } from './run.js';

/** By its path: a process run inside may be given a PATH without it (a test of nft missing). */
const NSENTER = ['/usr/bin/nsenter', '/bin/nsenter'].find((path) => existsSync(path)) ?? 'nsenter';
const holders = new Set<ChildProcess>();
process.on('exit', () => {
  for (const holder of holders) holder.kill('SIGKILL');
});

export class NetNamespace {
  private constructor(private readonly holder: ChildProcess) {}

  /** A new namespace with its loopback up (127.0.0.0/8 and ::1). */
  static async create(): Promise<NetNamespace> {
    const holder = spawn('unshare', ['--net', '--', 'sh', '-c', 'ip link set lo up && echo up && exec sleep 2147483647'], { stdio: ['ignore', 'pipe', 'pipe'] });
    holders.add(holder);
    holder.once('exit', () => holders.delete(holder));
    let errors = '';
    holder.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    const [ready] = await Promise.race([once(holder.stdout!, 'data'), once(holder, 'exit').then(() => [undefined])]);
    if (ready === undefined) throw new Error(`unshare --net failed (tests that change nftables run as root): ${errors.trim()}`);
    return new NetNamespace(holder);
  }

  /** nsenter's arguments that put a command into this namespace: `[...wrap(), program, ...args]`. */
  prefix(): string[] {
    return [NSENTER, `--net=/proc/${this.holder.pid}/ns/net`, '--'];
  }

  /** [command, args] that run `program args` inside the namespace, for spawn(). */
  wrap(program: string, args: readonly string[]): [string, string[]] {
    const [nsenter, ...rest] = this.prefix() as [string, ...string[]];
    return [nsenter, [...rest, program, ...args]];
  }

  /** Runs a program inside the namespace to its end. */
  run(program: string, args: readonly string[], input?: string, timeoutMs?: number): Promise<RunResult> {
    return run(...this.wrap(program, args), timeoutMs, input);
  }

  /** Runs a program inside and returns its stdout; throws with its stderr when it fails. */
  async must(program: string, args: readonly string[], input?: string): Promise<string> {
    const result = await this.run(program, args, input);
    if (result.code !== 0) throw new Error(`${program} ${args.join(' ')} (in a netns) exited with ${result.code}: ${result.stderr.trim()}`);
    return result.stdout;
  }

  /**
   * A second namespace joined to this one by a veth pair: `address` here, `peerAddress` there
   * (IPv4 /24 and IPv6 /64 pairs), so traffic between them passes this namespace's input hook.
   */
  async linkPeer(pair: { here: string[]; there: string[] }): Promise<NetNamespace> {
    const peer = await NetNamespace.create();
    await this.must('ip', ['link', 'add', 'veth-here', 'type', 'veth', 'peer', 'name', 'veth-there', 'netns', String(peer.holder.pid)]);
    for (const address of pair.here) await this.must('ip', ['address', 'add', address, 'dev', 'veth-here', ...(address.includes(':') ? ['nodad'] : [])]);
    for (const address of pair.there) await peer.must('ip', ['address', 'add', address, 'dev', 'veth-there', ...(address.includes(':') ? ['nodad'] : [])]);
    await this.must('ip', ['link', 'set', 'veth-here', 'up']);
    await peer.must('ip', ['link', 'set', 'veth-there', 'up']);
    return peer;
  }

  /** Ends the namespace (and the veth pairs in it). */
  async close(): Promise<void> {
    if (this.holder.exitCode !== null || this.holder.signalCode !== null) return;
    const exited = once(this.holder, 'exit');
    this.holder.kill('SIGKILL');
    await exited;
  }
}
