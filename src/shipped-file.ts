import { fileURLToPath } from 'node:url';

/**
 * Where a file shipped with the program (`etc/config.cfg`, `etc/fail2ban/jail.local`) is on
 * this host, for hints: etc/ lies two levels above this module in the checkout, in a
 * `make install` tree and in the Debian package alike.
 */
export function shippedFile(relative: string): string {
  return fileURLToPath(new URL(`../../${relative}`, import.meta.url));
}
