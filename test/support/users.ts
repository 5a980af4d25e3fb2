import { hashPassword } from '../../broker/password.js';
import { BIN } from './paths.js';
import { run } from './run.js';

/** A password hash as the admin makes one: `syncfail2ban-broker --hash-password`. */
export async function hashWithCli(password: string): Promise<string> {
  const result = await run(process.execPath, [BIN.broker, '--hash-password'], 30_000, `${password}\n`);
  if (result.code !== 0) throw new Error(`--hash-password exited with ${result.code}: ${result.stderr}`);
  return result.stdout.trim();
}

/** A [users] section with one line per account (name -> password), hashed by `hash`. */
export async function usersSection(accounts: Record<string, string>, hash: (password: string) => Promise<string> = hashPassword): Promise<string[]> {
  return ['[users]', ...(await Promise.all(Object.entries(accounts).map(async ([name, password]) => `${name} = ${await hash(password)}`)))];
}
