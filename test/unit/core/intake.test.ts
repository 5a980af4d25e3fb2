import { expect } from 'chai';
import { pino } from 'pino';
import type { RouteResult } from '../../../agent/fleet/fleet-state.js';
import { Intake, type EventTarget } from '../../../agent/intake/intake.js';
import type { SyncEvent } from '../../../src/event.js';
import type { SnapshotPart } from '../../../src/snapshot.js';
import { mustParseAddress } from '../../../src/ip.js';
import { NeverBanList } from '../../../src/never-ban.js';
import { RateLimiter } from '../../../src/rate-limit.js';
import { Refusals } from '../../../src/refusals.js';
import { measuredBy } from '../../support/status.js';

class CollectingRoute implements EventTarget {
  events: SyncEvent[] = [];
  parts: SnapshotPart[] = [];
  apply(event: SyncEvent): RouteResult {
    this.events.push(event);
    return 'queued';
  }
  applySnapshotPart(part: SnapshotPart): RouteResult {
    this.parts.push(part);
    return 'queued';
  }
  onlyNotes(): boolean {
    return false;
  }
}

describe('intake: the checks every event passes before any route', () => {
  let route: CollectingRoute;
  let refusals: Refusals;
  let intake: Intake;

  beforeEach(() => {
    route = new CollectingRoute();
    refusals = new Refusals(pino({ level: 'silent' }));
    intake = new Intake(new NeverBanList([mustParseAddress('192.0.2.0/24')], []), route, refusals, new RateLimiter({ perSecond: 1, burst: 3 }));
  });
  afterEach(() => refusals.close());

  const send = (topic: string, payload: string, retained = false) => intake.handle(topic, Buffer.from(payload), 'test', retained);

  it('refuses to ban a protected address, but lets its unban through (it may clear an older ban)', () => {
    send('f2b/sshd/ban', '192.0.2.5');
    send('f2b/sshd/unban', '192.0.2.5');
    expect(route.events.map((event) => `${event.action} ${event.address.text}`)).to.deep.equal(['unban 192.0.2.5']);
    expect(refusals.byReason()).to.deep.equal({ 'never-ban': 1 });
  });

  it('leaves protected and invalid entries out of a snapshot part, IPv4 hosts (read without parsing them) as every other address', () => {
    const entries: Array<[unknown, unknown]> = [
      ['203.0.113.7', 600],
      ['192.0.2.5', 600],
      ['127.0.0.9', -1],
      ['2001:DB8::1', 60],
      ['::1', 60],
      ['192.0.2.0/23', 60],
      ['198.51.100.0/24', -1],
      ['010.0.0.1', 60],
      [42, 60],
      ['203.0.113.8', 'soon'],
      ['198.51.100.77', 1.5],
      ['198.51.100.78', 30],
    ];
    const part = { origin: 'host-b', id: '0123456789abcdef', part: 0, parts: 1, ips: entries.map(([ip]) => ip), bantimes: entries.map(([, bantime]) => bantime) };
    send('f2b/sshd/snapshot', JSON.stringify(part));
    expect(route.parts.map(({ ips, bantimes, invalid, entries: count }) => ({ ips, bantimes, invalid, count }))).to.deep.equal([
      { ips: ['203.0.113.7', '2001:db8::1', '198.51.100.0/24', '198.51.100.78'], bantimes: [600, 60, -1, 30], invalid: 4, count: 12 },
    ]);
    expect(refusals.byReason()).to.deep.equal({ 'never-ban': 1, 'bad-address': 1 });
  });

  it('refuses a retained message replayed by a broker', () => {
    send('f2b/sshd/ban', '203.0.113.5', true);
    expect(route.events).to.deep.equal([]);
    expect(refusals.byReason()).to.deep.equal({ retained: 1 });
  });

  it('limits each origin on its own', () => {
    for (let i = 1; i <= 5; i++) send('f2b/sshd/ban', JSON.stringify({ ip: `203.0.113.${i}`, origin: 'noisy' }));
    send('f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.9', origin: 'quiet' }));
    expect(route.events.map((event) => event.address.text)).to.deep.equal(['203.0.113.1', '203.0.113.2', '203.0.113.3', '203.0.113.9']);
    expect(refusals.byReason()).to.deep.equal({ 'rate-limited': 2 });
    expect(Object.keys(measuredBy(intake.status(), 'peer_last_event')).sort()).to.deep.equal(['noisy', 'quiet']);
  });
});

