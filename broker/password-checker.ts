import { createHmac, randomBytes } from 'node:crypto';
import { verifyPassword } from './password.js';

/** Checked when the account is unknown, so that answering takes as long as for a known one. */
const DUMMY_HASH = '$scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
const RUNNING = 2;
const WAITING = 32;
const PER_ADDRESS = 4;
const REMEMBERED = 1_000;
const REMEMBER_MS = 10 * 60_000;

/**
 * Checks account passwords against the scrypt hashes of [users] without letting strangers
 * starve the agent or lock hosts out. A check costs ~50 ms of one of libuv's four threads,
 * which file and DNS work share: two run at a time behind a short queue, one sender address
 * may hold only a few places in it, and a password that was right is remembered (as an HMAC
 * under a key made at start) for a while, so hosts that reconnect, and the client that
 * connects once per ban, skip the queue whatever strangers do.
 */
export class PasswordChecker {
  private readonly key = randomBytes(32);
  private readonly remembered = new Map<string, number>();
  private readonly perAddress = new Map<string, number>();
  private readonly waiting: Array<() => void> = [];
  private running = 0;

  constructor(private readonly users: ReadonlyMap<string, string>) {}

  /** Whether the password is right; null when too many checks are pending (answer "server unavailable"). */
  check(account: string | undefined, password: Buffer, remote = 'unknown'): Promise<boolean> | null {
    const stored = (account !== undefined && this.users.get(account)) || DUMMY_HASH;
    const token = createHmac('sha256', this.key).update(`${account}\u0000${stored}\u0000`).update(password).digest('base64');
    if ((this.remembered.get(token) ?? 0) > Date.now()) return Promise.resolve(true);

    const pending = this.perAddress.get(remote) ?? 0;
    if (pending >= PER_ADDRESS || (this.running >= RUNNING && this.waiting.length >= WAITING)) return null;
    this.perAddress.set(remote, pending + 1);
    const verify = async (): Promise<boolean> => {
      const ok = (await verifyPassword(password, stored)) && stored !== DUMMY_HASH;
      if (ok) this.remember(token);
      return ok;
    };
    return this.schedule(verify).finally(() => {
      const left = (this.perAddress.get(remote) ?? 1) - 1;
      if (left > 0) this.perAddress.set(remote, left);
      else this.perAddress.delete(remote);
    });
  }

  private schedule<T>(work: () => Promise<T>): Promise<T> {
    const start = (): Promise<T> => {
      this.running += 1;
      return work().finally(() => {
        this.running -= 1;
        this.waiting.shift()?.();
      });
    };
    if (this.running < RUNNING) return start();
    return new Promise<T>((resolve, reject) => this.waiting.push(() => void start().then(resolve, reject)));
  }

  private remember(token: string): void {
    this.remembered.delete(token);
    this.remembered.set(token, Date.now() + REMEMBER_MS);
    if (this.remembered.size > REMEMBERED) this.remembered.delete(this.remembered.keys().next().value!);
  }
}
