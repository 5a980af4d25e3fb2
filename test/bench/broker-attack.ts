import { flood, floodJunk, manySubscriptions, offlineSessions, passwordGuessing, stalledSubscriber } from '../support/broker-attacks.js';
import { residentMb } from '../support/memory.js';
import { freePortOn } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { usersSection } from '../support/users.js';
import { waitFor } from '../support/wait.js';
import { median } from './stats.js';

const BANS = 5;
const PASSWORDS = { 'bench-a': 'correct horse battery a', 'bench-b': 'correct horse battery b' };

/** What one `measure` printed: the legitimate logins are "succeeded/tried". */
type Row = [name: string, rssNow: number, rssPeak: number, latency: number, logins: string];

/**
 * What the attacks of issue 11 cost the attacked host: its agent's resident memory, how
 * long a legitimate ban from another host takes from the start of its fail2ban action
 * (syncfail2ban-client -a) to the attacked host's sync jail, and how many of those legitimate logins got through, during
 * each attack and without one (the baseline, same run). The password-guessing attack runs
 * against a second pair whose broker requires passwords, beside that pair's own baseline.
 */
export async function run(): Promise<void> {
  const memoryAttacks = await onPair(false, async (measure, target, url) => {
    await measure('no attack');
    await offlineSessions(target, 2_000);
    await measure('2,000 persistent sessions + 20,000 events', flood(url, '127.0.2.1', 20_000));
    const subscriber = await manySubscriptions({ ...target, localAddress: '127.0.3.1' }, 100_000);
    await measure('100,000 subscriptions on one connection');
    await subscriber.session.close();
    const stalled = await stalledSubscriber({ ...target, localAddress: '127.0.4.1' });
    await measure('a subscriber that stops reading + 20,000 events', flood(url, '127.0.2.2', 20_000, floodJunk));
    await stalled.close();
  });
  const loginAttack = await onPair(true, async (measure, target) => {
    await measure('no attack, password logins');
    const guessing = passwordGuessing(target, 'bench-a', 60, 6);
    try {
      await waitFor(() => (guessing.answers.get(3) ?? 0) > 100, 'the attack to fill the login queue');
      await measure('60 addresses x 6 wrong-password CONNECTs');
    } finally {
      await guessing.stop();
    }
  });
  for (const rows of [memoryAttacks, loginAttack]) {
    const [, , , baseline] = rows[0]!;
    for (const [name, now, peak, latency, logins] of rows) {
      process.stdout.write(
        `${name.padEnd(50)} agent RSS ${now.toFixed(0).padStart(4)} MB (peak ${peak.toFixed(0)} MB), legitimate ban ${latency.toFixed(0).padStart(5)} ms (${(latency / baseline).toFixed(2)}x no attack), logins ${logins}\n`,
      );
    }
  }
}

type Measure = (name: string, during?: Promise<unknown>) => Promise<void>;

/** Runs `attacks` against bench-b's embedded broker, with bench-a's client publishing legitimate bans through it; resolves with what `measure` measured. */
async function onPair(passwords: boolean, attacks: (measure: Measure, target: { host: string; port: number }, url: string) => Promise<void>): Promise<Row[]> {
  const rows: Row[] = [];
  const port = await freePortOn(['127.0.0.3']);
  const url = `mqtt://127.0.0.3:${port}`;
  const users = passwords ? await usersSection(PASSWORDS) : [];
  const login = (name: keyof typeof PASSWORDS) => (passwords ? [`mqtt_password = ${PASSWORDS[name]}`] : []);
  const b = await SimHost.start({ name: 'bench-b', ip: '127.0.0.3', port, extra: login('bench-b'), sections: users });
  const a = await SimHost.start({ name: 'bench-a', ip: '127.0.0.2', port, brokerUrl: url, extra: [...login('bench-a'), 'connection_timeout = 10'] });
  await b.startAgent();
  await a.startAgent();
  let next = 0;
  const applied = () => b.requireAgent().logLines().filter((line) => line.jail === 'sshd-sync' && Number(line.bans) > 0);
  // From the client's start to the agent's log line for the batch. Not from the client's exit:
  // while an attack runs in this process, its event loop sees the exit late, after the ban landed.
  const measure: Measure = async (name, during = Promise.resolve()) => {
    const samples: number[] = [];
    let succeeded = 0;
    for (let i = 0; i < BANS; i++) {
      const before = applied().length;
      const started = Date.now();
      const published = await a.client(['-a', 'sshd', 'banip', `198.51.100.${++next}`]);
      if (published.code !== 0) continue;
      succeeded++;
      const line = await waitFor(() => applied()[before], 'the ban applied on bench-b', 30_000, 5);
      samples.push(Number(line.time) - started);
    }
    await during;
    const memory = await residentMb(b.requireAgent().child.pid!);
    rows.push([name, memory.now, memory.peak, samples.length ? median(samples) : NaN, `${succeeded}/${BANS}`]);
  };
  try {
    await attacks(measure, { host: '127.0.0.3', port }, url);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
  return rows;
}
