import type { NftHelper } from './nft-helper.js';
import { runWithScript, type ProcessRun } from './nft-process.js';

/**
 * Why nft failed: not installed, not allowed (not root, no CAP_NET_ADMIN), a kernel without
 * nf_tables, no answer in time, or it refused what it was given (`lines`: where in the script).
 */
export type NftFailure = 'missing' | 'not-permitted' | 'unsupported' | 'timeout' | 'refused';

export class NftError extends Error {
  override readonly name = 'NftError';

  constructor(
    readonly kind: NftFailure,
    message: string,
    /** Lines of the script (1-based) nft's error messages point at. */
    readonly lines: readonly number[] = [],
  ) {
    super(message);
  }

  /** What the operator does about it. */
  get fix(): string {
    return NFT_FIXES[this.kind];
  }
}

const NFT_FIXES: Record<NftFailure, string> = {
  missing: 'install nftables ("apt-get install nftables"), or set nft_sync = false',
  'not-permitted':
    'nft needs CAP_NET_ADMIN: run syncfail2ban as root, and under systemd give the service that capability ("systemctl edit syncfail2ban", add the two lines "[Service]" and "CapabilityBoundingSet=CAP_NET_ADMIN", then "systemctl restart syncfail2ban")',
  unsupported: 'load the nf_tables kernel modules ("modprobe nf_tables"; a kernel without CONFIG_NF_TABLES cannot); in a container, its host must provide nftables; or set nft_sync = false',
  timeout: 'see whether nft hangs ("nft list tables"); the system may be overloaded',
  refused: 'see the message; "syncfail2ban --remove-nft-table" and a restart rebuild the table',
};

export interface NftOptions {
  /** The program and leading arguments: ['nft'] (found in PATH), or a wrapper in tests. */
  command?: readonly string[];
  /** An nft run that takes longer is killed. */
  timeoutMs?: number;
  /** Where nft is started from: the agent's helper process (see NftHelper); unset, this process. */
  helper?: NftHelper;
}

const MAX_MESSAGE = 600;

/**
 * Runs the nft program with an argument array (never a shell); a script goes on its stdin
 * (`nft -f -`), so that one batch is one transaction: all of it applies, or none.
 */
export class Nft {
  private readonly command: readonly string[];
  private readonly timeoutMs: number;
  private readonly helper: NftHelper | undefined;

  constructor(options: NftOptions = {}) {
    this.command = options.command ?? ['nft'];
    // Listing or writing a million elements takes nft tens of seconds on a busy machine.
    this.timeoutMs = options.timeoutMs ?? 300_000;
    this.helper = options.helper;
  }

  /** Applies a script as one transaction. */
  async apply(script: string | Buffer): Promise<void> {
    await this.run(['-f', '-'], script);
  }

  /** `nft -j [-t] list <what...>`, parsed; undefined when the object does not exist. */
  async listJson(what: readonly string[], terse = false): Promise<unknown> {
    try {
      return JSON.parse(await this.run(['-j', ...(terse ? ['-t'] : []), 'list', ...what]));
    } catch (error) {
      if (error instanceof NftError && error.kind === 'refused' && /No such file or directory/.test(error.message)) return undefined;
      throw error;
    }
  }

  async run(args: readonly string[], input: string | Buffer = ''): Promise<string> {
    const { command, timeoutMs, helper } = this;
    const run = await (helper ? helper.run(command, args, input, nftEnvironment(), timeoutMs) : runWithScript(command, args, input, nftEnvironment(), timeoutMs));
    return outcome(command[0]!, run, timeoutMs);
  }
}

/** nft's output, or the NftError that says why it failed. */
function outcome(program: string, run: ProcessRun, timeoutMs: number): string {
  switch (run.kind) {
    case 'not-started':
      throw run.errno === 'ENOENT' ? new NftError('missing', `${program} is not installed (not found in PATH)`) : new NftError('not-permitted', `cannot run ${program}: ${run.message}`);
    case 'timed-out':
      throw new NftError('timeout', `nft did not finish within ${timeoutMs / 1000} s`);
    case 'no-script':
      throw new Error(`the script for nft could not be read back: ${run.message}`);
    case 'exited':
      if (run.code === 0) return run.stdout.toString();
      throw classify(run.stderr, run.code);
  }
}

/**
 * nft's environment: messages in English (classify() reads them), and glibc's malloc asked
 * to back its heap with transparent huge pages where the kernel allows them (madvise): a
 * batch of 25,000 elements took nft 3,000 page faults, 1,000 so (glibc >= 2.35 reads the
 * tunable, older ones ignore it). On the virtual machines measured here a first touch of a
 * page costs about 12 us: 0.11 -> 0.09 s per batch.
 */
function nftEnvironment(): NodeJS.ProcessEnv {
  const tunables = [process.env.GLIBC_TUNABLES, 'glibc.malloc.hugetlb=1'].filter(Boolean).join(':');
  return { ...process.env, LC_ALL: 'C', GLIBC_TUNABLES: tunables };
}

function classify(stderr: string, code: number | null): NftError {
  const message = summary(stderr) || `nft exited with code ${code}`;
  if (/Operation not permitted|you must be root/i.test(stderr)) return new NftError('not-permitted', `nft is not permitted to change nftables: ${message}`);
  // No nfnetlink ("Unable to initialize Netlink socket: Protocol not supported"), no nf_tables, or a module it needs missing.
  if (/Protocol not supported|Address family not supported|Operation not supported|Netlink socket|Could not receive/i.test(stderr)) {
    return new NftError('unsupported', `the kernel does not provide nf_tables: ${message}`);
  }
  const lines = [...stderr.matchAll(/^\/dev\/stdin:(\d+):/gm)].map((match) => Number(match[1]));
  return new NftError('refused', `nft refused it: ${message}`, lines);
}

/** nft's error lines without the script excerpts and carets it prints under each. */
function summary(stderr: string): string {
  const errors = stderr
    .split('\n')
    .filter((line) => /Error:|^netlink:|^Operation/i.test(line))
    .map((line) => line.replace(/^\/dev\/stdin:[\d:-]+\s*/, '').trim());
  const text = [...new Set(errors)].join('; ') || stderr.trim().split('\n')[0] || '';
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}...` : text;
}
