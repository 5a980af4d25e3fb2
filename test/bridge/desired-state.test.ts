import { expect } from 'chai';
import { DesiredState, holderOf, MANUAL_ORIGIN, MAX_HOLDER_ENTRIES, MAX_HOLDERS_PER_ADDRESS, MAX_WANTED_ADDRESSES } from '../../agent/bridge/desired-state.js';

describe('bridge desired state (reference counting)', function () {
  it('keeps an address while any (origin, jail) holder bans it', function () {
    const state = new DesiredState();
    expect(state.hold('bans', '203.0.113.1', 'host-a/sshd')).to.equal('new');
    expect(state.hold('bans', '203.0.113.1', 'host-b/sshd')).to.equal('known');
    expect(state.hold('bans', '203.0.113.1', 'host-a/sshd'), 'a repeated ban').to.equal('known');
    expect(state.release('bans', '203.0.113.1', 'host-a/sshd')).to.equal(false);
    expect(state.wants('bans', '203.0.113.1')).to.equal(true);
    expect(state.release('bans', '203.0.113.1', 'host-c/sshd'), 'an unban by a host that never banned it').to.equal(false);
    expect(state.release('bans', '203.0.113.1', 'host-b/sshd')).to.equal(true);
    expect(state.wants('bans', '203.0.113.1')).to.equal(false);
    expect(state.counts()).to.deep.equal({});
  });

  it('a bare unban drops every holder of its jail, not those of other jails mapped to the alias', function () {
    const state = new DesiredState();
    state.hold('bans', '203.0.113.2', 'host-a/sshd');
    state.hold('bans', '203.0.113.2', 'host-b/sshd');
    state.hold('bans', '203.0.113.2', 'host-b/web');
    expect(state.releaseJail('bans', '203.0.113.2', 'sshd')).to.equal(false);
    expect(state.holders('bans', '203.0.113.2')).to.deep.equal(['host-b/web']);
    expect(state.releaseJail('bans', '203.0.113.2', 'web')).to.equal(true);
  });

  it('gives manual events a holder no host can have', function () {
    expect(holderOf({ jail: 'sshd' })).to.equal(`${MANUAL_ORIGIN}/sshd`);
    expect(holderOf({ jail: 'sshd', origin: 'manual' })).not.to.equal(holderOf({ jail: 'sshd' }));
  });

  it('prunes holders whose jail no longer maps to that alias', function () {
    const state = new DesiredState();
    state.hold('bans', '203.0.113.3', 'host-a/sshd');
    state.hold('bans', '203.0.113.3', 'host-a/web');
    state.hold('old', '203.0.113.4', 'host-a/web');
    expect(state.prune(new Map([['sshd', 'bans']]))).to.deep.equal({ moved: 0, dropped: 2 });
    expect(state.toJSON()).to.deep.equal({ bans: { '203.0.113.3': ['host-a/sshd'] } });
  });

  it('moves holders to the alias their jail maps to now, instead of dropping them', function () {
    const state = new DesiredState();
    state.hold('bans', '203.0.113.3', 'host-a/sshd');
    state.hold('bans', '203.0.113.3', 'host-b/web');
    state.hold('bans', '203.0.113.4', 'host-a/web');
    state.hold('webbans', '203.0.113.4', 'host-c/web');
    expect(state.prune(new Map([['sshd', 'bans'], ['web', 'webbans']]))).to.deep.equal({ moved: 2, dropped: 0 });
    expect(state.toJSON()).to.deep.equal({
      bans: { '203.0.113.3': ['host-a/sshd'] },
      webbans: { '203.0.113.4': ['host-c/web', 'host-a/web'], '203.0.113.3': ['host-b/web'] },
    });
    expect(state.size).to.equal(3);
    // A move the new alias has no room for is a drop.
    const capped = new DesiredState(1);
    capped.hold('bans', '203.0.113.5', 'host-a/web');
    expect(capped.prune(new Map([['web', 'webbans']]))).to.deep.equal({ moved: 1, dropped: 0 });
    expect(capped.toJSON()).to.deep.equal({ webbans: { '203.0.113.5': ['host-a/web'] } });
  });

  it('caps holder entries over all addresses (MAX_HOLDER_ENTRIES), and holders per address at 64', function () {
    expect(MAX_HOLDERS_PER_ADDRESS).to.equal(64);
    expect(new DesiredState().maxHolderEntries).to.equal(MAX_HOLDER_ENTRIES).and.equal(2 * MAX_WANTED_ADDRESSES);
    const state = new DesiredState(10, 64, 3);
    expect(state.hold('bans', '203.0.113.1', 'a/sshd')).to.equal('new');
    expect(state.hold('bans', '203.0.113.1', 'b/sshd')).to.equal('known');
    expect(state.hold('bans', '203.0.113.2', 'a/sshd')).to.equal('new');
    expect(state.hold('bans', '203.0.113.1', 'c/sshd'), 'one more holder').to.equal('saturated');
    expect(state.hold('bans', '203.0.113.3', 'a/sshd'), 'a new address').to.equal('saturated');
    expect(state.hold('bans', '203.0.113.1', 'a/sshd'), 'a holder it has').to.equal('known');
    expect(state.wants('bans', '203.0.113.3')).to.equal(false);
    state.releaseJail('bans', '203.0.113.1', 'sshd');
    expect(state.hold('bans', '203.0.113.3', 'a/sshd'), 'room again once holders go').to.equal('new');
    expect(state.hold('bans', '203.0.113.3', 'b/sshd')).to.equal('known');
    expect(state.hold('bans', '203.0.113.4', 'b/sshd')).to.equal('saturated');
  });

  it('is capped: refuses new addresses beyond its maximum, and new holders of an address beyond theirs', function () {
    expect(new DesiredState().maxAddresses).to.equal(MAX_WANTED_ADDRESSES).and.equal(1_000_000);
    expect(new DesiredState().maxHolders).to.equal(MAX_HOLDERS_PER_ADDRESS);
    const state = new DesiredState(3, 2);
    expect(state.hold('bans', '203.0.113.1', 'a/sshd')).to.equal('new');
    expect(state.hold('bans', '203.0.113.2', 'a/sshd')).to.equal('new');
    expect(state.hold('other', '203.0.113.1', 'a/web')).to.equal('new');
    expect(state.size).to.equal(3);
    expect(state.hold('bans', '203.0.113.3', 'a/sshd'), 'over all aliases').to.equal('full');
    expect(state.wants('bans', '203.0.113.3')).to.equal(false);
    expect(state.hold('bans', '203.0.113.1', 'b/sshd'), 'more holders of a wanted address are fine').to.equal('known');
    expect(state.hold('bans', '203.0.113.1', 'c/sshd')).to.equal('crowded');
    expect(state.hold('bans', '203.0.113.1', 'a/sshd'), 'a holder it has').to.equal('known');
    expect(state.holders('bans', '203.0.113.1')).to.deep.equal(['a/sshd', 'b/sshd']);

    // Room again once addresses go, however they go.
    expect(state.release('bans', '203.0.113.2', 'a/sshd')).to.equal(true);
    expect(state.hold('bans', '203.0.113.3', 'a/sshd')).to.equal('new');
    state.forget('bans', '203.0.113.1');
    expect(state.prune(new Map([['sshd', 'bans']]))).to.deep.equal({ moved: 0, dropped: 1 });
    expect(state.size).to.equal(1);
    expect(state.hold('bans', '203.0.113.4', 'a/sshd')).to.equal('new');
    expect(state.hold('bans', '203.0.113.5', 'a/sshd')).to.equal('new');
    expect(state.hold('bans', '203.0.113.6', 'a/sshd')).to.equal('full');
  });
});
