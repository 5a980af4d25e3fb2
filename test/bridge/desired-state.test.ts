import { expect } from 'chai';
import { DesiredState, holderOf, MANUAL_ORIGIN } from '../../agent/bridge/desired-state.js';

describe('bridge desired state (reference counting)', function () {
  it('keeps an address while any (origin, jail) holder bans it', function () {
    const state = new DesiredState();
    expect(state.hold('bans', '203.0.113.1', 'host-a/sshd')).to.equal(true);
    expect(state.hold('bans', '203.0.113.1', 'host-b/sshd')).to.equal(false);
    expect(state.hold('bans', '203.0.113.1', 'host-a/sshd'), 'a repeated ban').to.equal(false);
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
    expect(state.prune(new Map([['sshd', 'bans']]))).to.equal(2);
    expect(state.toJSON()).to.deep.equal({ bans: { '203.0.113.3': ['host-a/sshd'] } });
  });
});
