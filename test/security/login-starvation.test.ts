import { expect } from 'chai';
import { passwordGuessing } from '../support/broker-attacks.js';
import { freePortOn } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { usersSection } from '../support/users.js';
import { waitFor } from '../support/wait.js';

const PASSWORDS = { 'login-a': 'correct horse battery a', 'login-b': 'correct horse battery b' };
const ATTACK_ADDRESSES = 60;
const ATTEMPTS_AT_ONCE = 6;
const LOGINS = 100;

/**
 * Finding 2 of the broker review: 60 source addresses, each with 6 wrong-password CONNECTs
 * in flight at all times (half of them naming the real account login-a, half names that do
 * not exist), while login-a's syncfail2ban-client logs in 100 times from another address to
 * publish bans, 10 at a time, against a broker that has not seen its password before.
 */
describe('logins under a many-address password-guessing attack', function () {
  this.timeout(300_000);
  let a: SimHost;
  let b: SimHost;
  let port: number;

  before(async () => {
    port = await freePortOn(['127.0.0.3']);
    const users = await usersSection(PASSWORDS);
    b = await SimHost.start({ name: 'login-b', ip: '127.0.0.3', port, extra: [`mqtt_password = ${PASSWORDS['login-b']}`], sections: users });
    a = await SimHost.start({ name: 'login-a', ip: '127.0.0.2', port, brokerUrl: `mqtt://127.0.0.3:${port}`, fail2ban: false, extra: [`mqtt_password = ${PASSWORDS['login-a']}`, 'connection_timeout = 10'] });
    await b.startAgent();
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it(`lets at least 99 of ${LOGINS} legitimate logins through, each publishing its ban`, async () => {
    const { answers, stop } = passwordGuessing({ host: '127.0.0.3', port }, 'login-a', ATTACK_ADDRESSES, ATTEMPTS_AT_ONCE);
    try {
      await waitFor(() => (answers.get(3) ?? 0) > 100, 'the attack to fill the login queue');
      const results: Array<{ code: number; stderr: string }> = [];
      for (let i = 0; i < LOGINS; i += 10) {
        results.push(...(await Promise.all(Array.from({ length: 10 }, (_, j) => a.client(['-a', 'sshd', 'banip', `203.0.113.${i + j + 1}`])))));
      }
      const failed = results.filter((result) => result.code !== 0);
      expect(LOGINS - failed.length, `failures: ${JSON.stringify(failed.slice(0, 3))}`).to.be.at.least(99);
      const attempts = [...answers.values()].reduce((sum, count) => sum + count, 0);
      expect(answers.get(0) ?? 0, 'attackers let in').to.equal(0);
      expect(attempts, `attack answers: ${JSON.stringify(Object.fromEntries(answers))}`).to.be.above(1_000);
    } finally {
      await stop();
    }
    await waitFor(async () => (await b.banned('sshd-sync')).filter((ip) => ip.startsWith('203.0.113.')).length >= 99, "login-a's bans in login-b's sync jail");
  });
});
