import { expect } from 'chai';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { Replay, serialise } from '../../../agent/fleet/store-lines.js';

describe('holdings store lines', () => {
  it("a restart gives each origin its holdings in the order it took them (the eviction's oldest first), whatever the jail's name", () => {
    const holdings = new Holdings();
    // host-a takes 10.0.0.2 before 10.0.0.1, which host-b held first.
    holdings.add('host-b', 'sshd', '10.0.0.1');
    holdings.add('host-a', 'sshd', '10.0.0.2');
    holdings.add('host-a', 'sshd', '10.0.0.1');
    holdings.add('host-c', 'toString', '10.0.0.3');
    const replayed = new Holdings();
    const replay = new Replay(replayed);
    for (const line of [...serialise(holdings, [])].join('').split('\n').slice(0, -1)) expect(replay.line(line), line).to.equal(true);
    expect([...replayed.heldBy('host-a', 'sshd').keys()]).to.deep.equal(['10.0.0.2', '10.0.0.1']);
    expect([...replayed.heldBy('host-b', 'sshd').keys()]).to.deep.equal(['10.0.0.1']);
    expect([...replayed.heldBy('host-c', 'toString').keys()]).to.deep.equal(['10.0.0.3']);
    expect(replayed.size).to.equal(4);
  });
});
