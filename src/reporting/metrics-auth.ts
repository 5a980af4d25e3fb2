import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Whether an Authorization header carries the metrics token: `Bearer <token>`, or `Basic`
 * with the token as the password (any user name), which is what Prometheus' basic_auth sends.
 */
export function presentsToken(header: string | undefined, token: string): boolean {
  const [scheme, credentials = ''] = (header ?? '').split(' ', 2) as [string, string?];
  let given: string;
  if (scheme.toLowerCase() === 'bearer') given = credentials;
  else if (scheme.toLowerCase() === 'basic') given = Buffer.from(credentials, 'base64').toString('utf8').split(':').slice(1).join(':');
  else return false;
  // Hashed first: timingSafeEqual needs equal lengths, and the length must not leak either.
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(token));
}
