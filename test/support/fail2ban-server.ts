/**
 * Private fail2ban servers for tests, set up as fail2ban itself documents it: each one
 * gets its own temp dir with a config dir (conf/) replacing /etc/fail2ban and a run dir (run/)
 * for socket, pid, log, database and the `record` action's log. No iptables, no root paths.
 *
 * Every started server is tracked; stopAllFail2ban() stops them, and a process 'exit' or
 * termination signal kills any still running so a crashed test run leaves none behind.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fail2banCommand } from './fail2ban-socket.js';
import { waitFor } from './wait.js';

const run = promisify(execFile);

export interface JailSpec {
  name: string;
  /** sync: never-matching filter, bantime -1, no action (but `action`). primary: runs `primaryAction`. */
  kind: 'sync' | 'primary';
  /**
   * The jail's action line instead of the default (none for a sync jail, `primaryAction` for a
   * primary one), in the same syntax: e.g. a sync jail's banaction, to measure what one costs
   * ('iptables-multiport[name=web]', its files in actionFiles).
   */
  action?: string;
  /** Overrides the jail's bantime (seconds, or fail2ban syntax like '1h'). */
  bantime?: number | string;
  /** A filter of the system's fail2ban (/etc/fail2ban/filter.d, copied with common.conf) instead of never-matches. */
  systemFilter?: string;
  /** Further `key = value` lines for the jail's section (maxretry, bantime.increment...). */
  settings?: string[];
}

export interface StartFail2banOptions {
  jails: JailSpec[];
  /** Appears in the temp dir name and in error messages; handy with several servers. */
  name?: string;
  /**
   * The `action =` value for primary jails, in fail2ban syntax (an action.d name, optionally
   * with [params]; several actions go on indented continuation lines). Default 'record'.
   * '@RUN@' and '@DIR@' are replaced by the run dir and the temp dir.
   */
  primaryAction?: string;
  /** Extra action.d/<name>.conf files (contents; '@RUN@'/'@DIR@' replaced as above). */
  actionFiles?: Record<string, string>;
  /** Python actions: action.d/<name>.py files (contents, as they are), loaded by `action = <name>.py[...]`. */
  pythonActions?: Record<string, string>;
  /** Runs once the server's dirs and config exist, before it starts (e.g. to write a file its actions read at start). */
  beforeStart?: (server: Fail2banServer) => Promise<void>;
  /** ':memory:' (default) loses bans on restart; 'file' keeps them in run/fail2ban.sqlite3. */
  db?: 'memory' | 'file';
  /** How long the server may take to answer `status <jail>` for every jail. Default 15 s. */
  readyTimeoutMs?: number;
  /** Runs the server through this command, e.g. nsenter into a network namespace (test/support/netns.ts), where its actions then act. */
  launcher?: readonly string[];
}

export interface Fail2banServer {
  readonly name: string;
  /** The temp dir holding conf/ and run/. Removed by stop(). */
  readonly dir: string;
  readonly confDir: string;
  readonly runDir: string;
  readonly socket: string;
  /** Where the `record` action appends "ban <jail> <ip>" / "unban <jail> <ip>" lines. */
  readonly actionsLog: string;
  readonly logFile: string;
  /** The sqlite file with db: 'file', otherwise null. */
  readonly dbFile: string | null;
  /** The fail2ban-server pid while running. */
  readonly pid: number | undefined;
  /** `get <jail> banned`: the addresses banned in the jail. */
  banned(jail: string): Promise<string[]>;
  /** `status <jail> short`: how many addresses the jail bans, without listing them (a cheap poll of a jail of 100,000). */
  bannedCount(jail: string): Promise<number>;
  /** `set <jail> banip <ip>`, as fail2ban itself banning; resolves with its count. */
  ban(jail: string, ip: string): Promise<number>;
  unban(jail: string, ip: string): Promise<number>;
  /** Lines of actionsLog so far ([] before the first action ran). */
  actions(): Promise<string[]>;
  /** Runs `fail2ban-client -s SOCK ...args` and resolves with its trimmed stdout. */
  cli(...args: string[]): Promise<string>;
  /** Stops the fail2ban process but keeps the dir (and a file db), for restart tests. */
  stopProcess(): Promise<void>;
  /**
   * Starts the process again with the same config and waits until every jail answers status.
   * With db: 'file', fail2ban restores earlier bans a few hundred ms AFTER that (measured), so
   * wait for them with waitFor.
   */
  startProcess(): Promise<void>;
  restart(): Promise<void>;
  /** Stops the process (SIGTERM, SIGKILL after a deadline) and removes the dir. */
  stop(): Promise<void>;
}

const running = new Set<PrivateFail2ban>();

export async function startFail2ban(opts: StartFail2banOptions): Promise<Fail2banServer> {
  const name = opts.name ?? 'f2b';
  if (!/^[\w.-]{1,20}$/.test(name)) throw new Error(`startFail2ban: name ${JSON.stringify(name)} must be 1-20 of [A-Za-z0-9_.-]`);
  checkJails(opts.jails);
  installExitCleanup();
  const dir = await mkdtemp(path.join(os.tmpdir(), `f2b-${name}-`));
  let server: PrivateFail2ban;
  try {
    server = new PrivateFail2ban(name, dir, opts);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  running.add(server);
  try {
    await server.writeConfig(opts);
    await opts.beforeStart?.(server);
    await server.startProcess();
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

/** Stops every server started by this process that is still running. Use in a root after() hook. */
export async function stopAllFail2ban(): Promise<void> {
  await Promise.allSettled([...running].map((server) => server.stop()));
}

function checkJails(jails: JailSpec[]): void {
  if (jails.length === 0) throw new Error('startFail2ban: give at least one jail');
  const seen = new Set<string>();
  for (const jail of jails) {
    if (!/^[\w.-]+$/.test(jail.name) || jail.name === 'DEFAULT' || jail.name === 'INCLUDES') {
      throw new Error(`startFail2ban: jail name ${JSON.stringify(jail.name)} must be [A-Za-z0-9_.-]+ and not DEFAULT/INCLUDES`);
    }
    if (seen.has(jail.name)) throw new Error(`startFail2ban: jail ${jail.name} is listed twice`);
    seen.add(jail.name);
  }
}

class PrivateFail2ban implements Fail2banServer {
  readonly confDir: string;
  readonly runDir: string;
  readonly socket: string;
  readonly actionsLog: string;
  readonly logFile: string;
  readonly dbFile: string | null;
  private readonly pidFile: string;
  private readonly jails: string[];
  private readonly readyTimeoutMs: number;
  private readonly launcher: readonly string[];
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private outputTail = '';
  private removed = false;

  constructor(
    readonly name: string,
    readonly dir: string,
    opts: StartFail2banOptions,
  ) {
    this.confDir = path.join(dir, 'conf');
    this.runDir = path.join(dir, 'run');
    this.socket = path.join(this.runDir, 'f2b.sock');
    this.actionsLog = path.join(this.runDir, 'actions.log');
    this.logFile = path.join(this.runDir, 'fail2ban.log');
    this.pidFile = path.join(this.runDir, 'f2b.pid');
    this.dbFile = opts.db === 'file' ? path.join(this.runDir, 'fail2ban.sqlite3') : null;
    this.jails = opts.jails.map((jail) => jail.name);
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 15_000;
    this.launcher = opts.launcher ?? [];
    // sun_path holds 108 bytes; a long TMPDIR would otherwise fail obscurely inside fail2ban.
    if (Buffer.byteLength(this.socket) > 100) {
      throw new Error(`startFail2ban: socket path ${this.socket} is too long for a unix socket; use a shorter TMPDIR`);
    }
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  async writeConfig(opts: StartFail2banOptions): Promise<void> {
    const fill = (text: string) => text.replaceAll('@RUN@', this.runDir).replaceAll('@DIR@', this.dir);
    await mkdir(path.join(this.confDir, 'filter.d'), { recursive: true });
    await mkdir(path.join(this.confDir, 'action.d'), { recursive: true });
    await mkdir(this.runDir, { recursive: true });
    await writeFile(
      path.join(this.confDir, 'fail2ban.conf'),
      lines(
        '[Definition]',
        'loglevel = INFO',
        `logtarget = ${this.logFile}`,
        'syslogsocket = auto',
        'allowipv6 = auto',
        `socket = ${this.socket}`,
        `pidfile = ${this.pidFile}`,
        `dbfile = ${this.dbFile ?? ':memory:'}`,
        'dbpurgeage = 1d',
      ),
    );
    await writeFile(path.join(this.confDir, 'filter.d', 'never-matches.conf'), lines('[Definition]', 'failregex = ^NEVER <HOST>$'));
    // <ip> stays quoted: fail2ban runs actions through a shell.
    await writeFile(
      path.join(this.confDir, 'action.d', 'record.conf'),
      lines(
        '[Definition]',
        `actionban = printf '%%s\\n' "ban <name> <ip>" >> <actlog>`,
        `actionunban = printf '%%s\\n' "unban <name> <ip>" >> <actlog>`,
        '[Init]',
        `actlog = ${this.actionsLog}`,
      ),
    );
    for (const [actionName, contents] of Object.entries(opts.actionFiles ?? {})) {
      if (!/^[\w.-]+$/.test(actionName)) throw new Error(`startFail2ban: action file name ${JSON.stringify(actionName)} must be [A-Za-z0-9_.-]+`);
      await writeFile(path.join(this.confDir, 'action.d', `${actionName}.conf`), fill(contents));
    }
    for (const [actionName, contents] of Object.entries(opts.pythonActions ?? {})) {
      if (!/^[\w.-]+$/.test(actionName)) throw new Error(`startFail2ban: action file name ${JSON.stringify(actionName)} must be [A-Za-z0-9_.-]+`);
      await writeFile(path.join(this.confDir, 'action.d', `${actionName}.py`), contents);
    }
    for (const filter of new Set(opts.jails.flatMap((jail) => (jail.systemFilter ? [jail.systemFilter, 'common'] : [])))) {
      await copyFile(path.join('/etc/fail2ban/filter.d', `${filter}.conf`), path.join(this.confDir, 'filter.d', `${filter}.conf`));
    }
    const sections = ['[DEFAULT]', 'backend = polling', 'usedns = no', 'ignoreself = false', 'ignoreip =', 'action =', ''];
    for (const jail of opts.jails) {
      const logpath = path.join(this.runDir, jail.kind === 'sync' ? 'empty.log' : `${jail.name}.log`);
      await writeFile(logpath, '', { flag: 'a' });
      sections.push(
        `[${jail.name}]`,
        'enabled = true',
        `filter = ${jail.systemFilter ?? 'never-matches'}`,
        `logpath = ${logpath}`,
        `bantime = ${jail.bantime ?? (jail.kind === 'sync' ? -1 : '1h')}`,
        `action = ${fill(jail.action ?? (jail.kind === 'sync' ? '' : (opts.primaryAction ?? 'record')))}`,
        ...(jail.settings ?? []),
        '',
      );
    }
    await writeFile(path.join(this.confDir, 'jail.conf'), lines(...sections));
  }

  async startProcess(): Promise<void> {
    if (this.pid !== undefined) throw new Error(`fail2ban test server "${this.name}" is already running (pid ${this.pid})`);
    this.outputTail = '';
    // -x removes a stale socket left by a killed server.
    const [program = 'fail2ban-server', ...args] = [...this.launcher, 'fail2ban-server', '-f', '-x', '-c', this.confDir, '-s', this.socket, '-p', this.pidFile];
    const child = spawn(program, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const keepTail = (chunk: Buffer) => {
      this.outputTail = (this.outputTail + chunk.toString('utf8')).slice(-4000);
    };
    child.stdout?.on('data', keepTail);
    child.stderr?.on('data', keepTail);
    // A forgotten server must not keep the test process alive; the exit handler kills it.
    child.unref();
    (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
    (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();
    let startError: Error | undefined;
    this.exited = new Promise<void>((resolve) => {
      child.once('error', (error) => {
        startError = error;
        resolve();
      });
      child.once('exit', () => resolve());
    });
    const died = this.exited.then(() => {
      throw new Error(
        startError
          ? `could not run fail2ban-server (${startError.message}); is fail2ban installed?`
          : `fail2ban-server exited early (code ${child.exitCode}, signal ${child.signalCode})`,
      );
    });
    died.catch(() => {});
    let givenUp = false;
    const ready = waitFor(
      async () => {
        if (givenUp) return true; // stop polling once the server died
        for (const jail of this.jails) await this.command('status', jail);
        return true;
      },
      `every jail of fail2ban test server "${this.name}" to answer status`,
      this.readyTimeoutMs,
    );
    ready.catch(() => {});
    try {
      await Promise.race([ready, died]);
    } catch (error) {
      givenUp = true;
      const report = await this.startFailureReport();
      await this.stopProcess();
      throw new Error(`fail2ban test server "${this.name}" did not come up: ${(error as Error).message}\n${report}`);
    }
  }

  async stopProcess(): Promise<void> {
    const child = this.child;
    if (!child || this.pid === undefined) return;
    child.kill('SIGTERM');
    // Stopping takes 0.2-2 s (jails stop, bans are flushed through their unban actions).
    if (!(await settlesWithin(this.exited, 10_000))) {
      child.kill('SIGKILL');
      await settlesWithin(this.exited, 5_000);
    }
  }

  async restart(): Promise<void> {
    await this.stopProcess();
    await this.startProcess();
  }

  async stop(): Promise<void> {
    try {
      await this.stopProcess();
    } finally {
      running.delete(this);
      if (!this.removed) {
        this.removed = true;
        await rm(this.dir, { recursive: true, force: true });
      }
    }
  }

  /** For the exit handler: no awaiting possible there. */
  killNow(): void {
    if (this.pid !== undefined) this.child?.kill('SIGKILL');
    if (!this.removed) {
      this.removed = true;
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  async cli(...args: string[]): Promise<string> {
    try {
      const { stdout } = await run('fail2ban-client', ['-s', this.socket, ...args], { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 });
      return stdout.trim();
    } catch (error) {
      const failure = error as { code?: number | string; stdout?: string; stderr?: string; message: string };
      const output = `${failure.stdout ?? ''}${failure.stderr ?? ''}`.trim().split('\n').slice(-5).join('\n');
      throw new Error(`fail2ban-client -s ${this.socket} ${args.join(' ')} failed (exit ${failure.code}): ${output || failure.message}`);
    }
  }

  async banned(jail: string): Promise<string[]> {
    const value = await this.command('get', jail, 'banned');
    if (!Array.isArray(value) || !value.every((ip) => typeof ip === 'string')) throw new Error(`get ${jail} banned: expected a list of addresses, got ${JSON.stringify(value).slice(0, 200)}`);
    return value;
  }

  async bannedCount(jail: string): Promise<number> {
    // [['Filter', [...]], ['Actions', [['Currently banned', n], ['Total banned', m]]]]
    const value = await this.command('status', jail, 'short');
    const section = (list: unknown, name: string): unknown => (Array.isArray(list) ? list.find((entry) => Array.isArray(entry) && entry[0] === name)?.[1] : undefined);
    const banned = section(section(value, 'Actions'), 'Currently banned');
    if (banned === undefined) throw new Error(`status ${jail} short: expected Actions' 'Currently banned', got ${JSON.stringify(value).slice(0, 300)}`);
    return count(banned);
  }

  async ban(jail: string, ip: string): Promise<number> {
    return count(await this.command('set', jail, 'banip', ip));
  }

  async unban(jail: string, ip: string): Promise<number> {
    return count(await this.command('set', jail, 'unbanip', ip));
  }

  /** A command through fail2ban's client library in a shared helper (test/support/fail2ban-socket.ts): what fail2ban-client sends, without a Python start per poll. */
  private async command(...args: string[]): Promise<unknown> {
    try {
      return await fail2banCommand(this.socket, args);
    } catch (error) {
      throw new Error(`fail2ban ${this.socket}: ${args.join(' ')} failed: ${(error as Error).message}`);
    }
  }

  async actions(): Promise<string[]> {
    try {
      return (await readFile(this.actionsLog, 'utf8')).split('\n').filter((line) => line !== '');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  private async startFailureReport(): Promise<string> {
    const parts: string[] = [];
    try {
      const log = await readFile(this.logFile, 'utf8');
      parts.push(`--- ${this.logFile} (tail) ---\n${log.split('\n').slice(-30).join('\n')}`);
    } catch {
      parts.push(`--- ${this.logFile}: not written ---`);
    }
    if (this.outputTail.trim()) parts.push(`--- fail2ban-server output (tail) ---\n${this.outputTail.trim()}`);
    try {
      await run('fail2ban-client', ['-c', this.confDir, '-t'], { timeout: 30_000 });
    } catch (error) {
      const failure = error as { stdout?: string; stderr?: string };
      parts.push(`--- fail2ban-client -c ${this.confDir} -t ---\n${`${failure.stdout ?? ''}${failure.stderr ?? ''}`.trim()}`);
    }
    return parts.join('\n');
  }
}

function count(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new Error(`expected a count from fail2ban, got ${JSON.stringify(value)}`);
  return value;
}

function lines(...items: string[]): string {
  return `${items.join('\n')}\n`;
}

async function settlesWithin(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

let exitCleanupInstalled = false;

function installExitCleanup(): void {
  if (exitCleanupInstalled) return;
  exitCleanupInstalled = true;
  const killAll = () => {
    for (const server of running) server.killNow();
    running.clear();
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      killAll();
      // Only re-raise when nobody else (e.g. mocha) handles the signal, to keep its default effect.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}
