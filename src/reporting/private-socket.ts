import { unlinkSync } from 'node:fs';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Problem } from '../status.js';
import { waitAtMost } from '../wait-at-most.js';

/** How long close() waits for the server's last connections to end (they are destroyed first). */
const CLOSE_WAIT_MS = 1_000;

/**
 * A unix socket of the agent's (control_socket, action_socket) that only root can use: mode
 * 0600, in a directory created 0700. It makes room for itself (a stale socket left by a killed
 * agent is removed; one another agent answers on is not), and never throws: what keeps it from
 * listening is kept as a problem, for the owner's status.
 */
export interface PrivateSocketOptions {
  path: string;
  /** The config key that sets the path, as written in config.cfg (`[broker] control_socket`): named in the fixes. */
  key: string;
  /** The program that listens: named when another one already does. */
  program: string;
  serve: (socket: Socket) => void;
  /** Connections open at once; Node closes any beyond at once. */
  maxConnections: number;
}

export class PrivateSocketServer {
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;
  /** Why it does not listen; null while it does (or before listen()). */
  problem: Problem | null = null;

  constructor(private readonly options: PrivateSocketOptions) {}

  get path(): string {
    return this.options.path;
  }

  /** Connections open now. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Listens; returns (and keeps) the problem when it cannot. */
  async listen(): Promise<Problem | null> {
    const { path, key } = this.options;
    this.problem = await prepare(this.options);
    if (this.problem) return this.problem;
    const server = createServer();
    try {
      await listenPrivately(server, path);
    } catch (error) {
      this.problem = { what: `cannot listen on ${path}: ${(error as Error).message}`, fix: `set ${key} to a path this user may create` };
      return this.problem;
    }
    server.maxConnections = this.options.maxConnections;
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      this.options.serve(socket);
    });
    this.server = server;
    return null;
  }

  /** Closes every connection and the socket, and removes it. */
  async close(): Promise<void> {
    const { server } = this;
    if (!server) return;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Not through libuv's threadpool, which a disk under load can keep busy with slow fsyncs (the
    // stores') for longer than a stop may take: CI saw an agent's stop hang here.
    try {
      unlinkSync(this.path);
    } catch {
      // gone already
    }
    await waitAtMost(closed, CLOSE_WAIT_MS);
  }
}

/** Makes room for the socket: creates its directory, removes a stale socket. Returns a problem (`key` names the setting to change), or null. */
async function prepare({ path, key, program }: PrivateSocketOptions): Promise<Problem | null> {
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  } catch (error) {
    return { what: `cannot create ${dirname(path)} (${(error as NodeJS.ErrnoException).code})`, fix: `run as root, or set ${key} to a path this user may create` };
  }
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch {
    return null; // nothing there
  }
  if (!isSocket) return { what: `${path} exists and is not a socket`, fix: `remove it, or set ${key} to another path` };
  if (await answers(path)) {
    return { what: `another process already answers on ${path}`, fix: `stop that one, or give each ${program} its own ${key}` };
  }
  try {
    await unlink(path); // left behind by a process that was killed
  } catch (error) {
    return { what: `cannot remove the stale socket ${path} (${(error as NodeJS.ErrnoException).code})`, fix: `remove it as root, or set ${key} to another path` };
  }
  return null;
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect({ path }, () => {
      probe.destroy();
      resolve(true);
    });
    probe.on('error', () => resolve(false));
  });
}

/** Binds with umask 0177 so the socket is never reachable by others, not even for a moment. */
async function listenPrivately(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const umask = process.umask(0o177);
    try {
      server.listen({ path }, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(umask);
    }
  });
  await chmod(path, 0o600);
}
