import { createHmac, randomBytes } from 'node:crypto';
import { LoginQueue } from './login-queue.js';
import { verifyPassword } from './password.js';

/** Checked when the account is unknown, so that answering takes as long as for a known one. */
const DUMMY_HASH = '$scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
const REMEMBERED = 1_000;
const REMEMBER_MS = 10 * 60_000;

/**
 * Checks account passwords against the scrypt hashes of [users] without letting strangers
 * starve the agent or lock hosts out. A check costs ~50 ms of one of libuv's four threads,
 * which file and DNS work share, so checks wait their turn in a LoginQueue (account names of
 * [users] ahead of unknown ones, each source address its fair share). A password that was
 * right is remembered (as an HMAC under a key made at start) for ten minutes after its last
 * use, so hosts that reconnect, and the client that connects once per ban, skip the queue
 * whatever strangers do.
 */
export class PasswordChecker {
  private readonly key = randomBytes(32);
  private readonly remembered = new Map<string, number>();
  private readonly queue = new LoginQueue();

  constructor(private readonly users: ReadonlyMap<string, string>) {}

  /** Whether the password is right; null when the queue has no place for it (answer "server unavailable"). */
  check(account: string | undefined, password: Buffer, source: string): Promise<boolean | null> {
    const stored = account !== undefined ? this.users.get(account) : undefined;
    const hash = stored ?? DUMMY_HASH;
    const token = createHmac('sha256', this.key).update(`${account}\u0000${hash}\u0000`).update(password).digest('base64');
    if ((this.remembered.get(token) ?? 0) > Date.now()) {
      this.remember(token);
      return Promise.resolve(true);
    }
    return this.queue.run(stored !== undefined, source, async () => {
      const ok = (await verifyPassword(password, hash)) && stored !== undefined;
      if (ok) this.remember(token);
      return ok;
    });
  }

  private remember(token: string): void {
    this.remembered.delete(token);
    this.remembered.set(token, Date.now() + REMEMBER_MS);
    if (this.remembered.size > REMEMBERED) this.remembered.delete(this.remembered.keys().next().value!);
  }
}
