import { expect } from 'chai';
import { publishAll } from '../../cli/mqtt-publish.js';
import { barrier } from '../support/barrier.js';
import { freePortOn } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';
import { agentLevelMessage, brokerLevelMessage, randomSource, type FuzzMessage } from './hostile-input.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261125);
const AGENT_LEVEL = 9_000;
const BROKER_LEVEL = 1_000;

function sumRefusals(host: SimHost, component: 'broker' | 'agent'): number {
  let total = 0;
  for (const line of host.requireAgent().logLines()) {
    if (typeof line.reason !== 'string' || (line.component === 'broker') !== (component === 'broker')) continue;
    total += typeof line.count === 'number' ? line.count : 1;
  }
  return total;
}

describe(`fuzz: ${AGENT_LEVEL + BROKER_LEVEL} malformed messages through a real broker into agents on real fail2ban (seed ${SEED})`, function () {
  this.timeout(300_000);
  let a: SimHost;
  let b: SimHost;
  let port: number;

  before(async () => {
    port = await freePortOn(['127.0.0.2', '127.0.0.3']);
    [a, b] = await Promise.all(
      ['fuzz-a', 'fuzz-b'].map((name, index) => SimHost.start({ name, ip: `127.0.0.${index + 2}`, port, peers: [`127.0.0.${3 - index}`] })),
    );
    await Promise.all([a.startAgent(), b.startAgent()]);
    await Promise.all([a.waitSubscribed(2), b.waitSubscribed(2)]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('bans nothing it should not, keeps every agent running and syncing, and counts every refusal', async () => {
    const random = randomSource(SEED);
    const agentLevel: FuzzMessage[] = Array.from({ length: AGENT_LEVEL }, () => agentLevelMessage(random, ['sshd', 'web']));
    const brokerLevel: FuzzMessage[] = Array.from({ length: BROKER_LEVEL }, () => brokerLevelMessage(random));
    const url = `mqtt://127.0.0.2:${port}`;

    // Everything the broker accepts goes through one connection, acknowledged one by one.
    await publishAll(url, agentLevel, { timeoutMs: 60_000 });
    // Each message the broker refuses costs the sender its connection: one connection each.
    let closedByBroker = 0;
    for (const message of brokerLevel) {
      await publishAll(url, [message], { timeoutMs: 5_000 }).then(
        () => expect.fail(`the broker accepted ${message.topic} (${message.payload.length} bytes)`),
        () => (closedByBroker += 1),
      );
    }
    expect(closedByBroker).to.equal(BROKER_LEVEL);

    const marker = await barrier({ host: '127.0.0.2', port }, [a, b]);
    for (const host of [a, b]) {
      expect(await host.banned('sshd-sync'), `${host.name}'s sshd-sync`).to.deep.equal([marker]);
      expect(await host.banned('web-sync'), `${host.name}'s web-sync`).to.deep.equal([]);
      expect(await host.banned('sshd'), `${host.name}'s sshd`).to.deep.equal([]);
      expect(host.requireAgent().alive, `${host.name}'s agent is running`).to.equal(true);
    }

    // still syncs a valid ban from a host
    await b.fail2ban.ban('sshd', '203.0.113.99');
    await waitFor(async () => (await a.banned('sshd-sync')).includes('203.0.113.99'), 'a valid ban after the fuzzing');

    // Refusal counters are summarised in the log; stopping flushes the last summary.
    for (const host of [a, b]) expect(await host.requireAgent().stop()).to.equal(0);
    expect(sumRefusals(a, 'agent'), "fuzz-a's agent refusals").to.equal(AGENT_LEVEL);
    expect(sumRefusals(b, 'agent'), "fuzz-b's agent refusals").to.equal(AGENT_LEVEL);
    expect(sumRefusals(a, 'broker'), "fuzz-a's broker refusals").to.equal(BROKER_LEVEL);
  });
});
