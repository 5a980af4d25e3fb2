import { Fail2banClient } from '../src/fail2ban/client.js';
import { type CanonicalAddress, parseAddress } from '../src/ip.js';

/** The jail's current bans from the local fail2ban, canonicalised; entries that are not addresses are reported and skipped. */
export async function readJailBans(socket: string, jail: string, timeoutMs: number): Promise<CanonicalAddress[]> {
  const client = new Fail2banClient(socket, { timeoutMs });
  try {
    const addresses: CanonicalAddress[] = [];
    for (const entry of await client.banned(jail)) {
      const parsed = parseAddress(entry);
      if (parsed.ok) addresses.push(parsed.address);
      else process.stderr.write(`syncfail2ban-client: skipping ${JSON.stringify(entry)} from jail ${jail}: ${parsed.reason}\n`);
    }
    return addresses;
  } finally {
    client.close();
  }
}
