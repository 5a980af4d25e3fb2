/** A ban's remaining time in the message contract: events, snapshot parts, what senders work out. */
import { expect } from 'chai';
import { MAX_BANTIME_S, remainingBantime, UNTIL_UNBANNED } from '../../../src/bantime.js';
import { decodeEvent, encodePayload } from '../../../src/event.js';
import { mustParseAddress } from '../../../src/ip.js';
import { decodeSnapshotPart, encodeSnapshot, MAX_SNAPSHOT_PART_BYTES } from '../../../src/snapshot.js';

const decode = (topic: string, payload: string) => decodeEvent(topic, Buffer.from(payload));
const decodePart = (payload: string) => decodeSnapshotPart('f2b/sshd/snapshot', Buffer.from(payload));

describe('bantime: a ban carries the time it has left', () => {
  it('an event carries its bantime; -1 or none is until unbanned', () => {
    const timed = decode('f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.7', origin: 'web-1', bantime: 600 }));
    expect(timed.ok && timed.event.bantime).to.equal(600);
    for (const payload of [JSON.stringify({ ip: '203.0.113.7', origin: 'web-1', bantime: -1 }), JSON.stringify({ ip: '203.0.113.7' }), '203.0.113.7']) {
      const result = decode('f2b/sshd/ban', payload);
      expect(result.ok, payload).to.equal(true);
      expect(result.ok && 'bantime' in result.event, payload).to.equal(false);
    }
  });

  it('refuses a ban whose bantime is not -1 or whole seconds up to ten years', () => {
    for (const bantime of [-2, 1.5, '600', MAX_BANTIME_S + 1, 1e300, true, [600], {}]) {
      const result = decode('f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.7', bantime }));
      expect(result, JSON.stringify(bantime)).to.deep.include({ ok: false, reason: 'bad-payload' });
    }
    expect(decode('f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.7', bantime: MAX_BANTIME_S })).ok).to.equal(true);
  });

  it("an unban ends the ban whatever its bantime says: it is never refused for it", () => {
    const result = decode('f2b/sshd/unban', JSON.stringify({ ip: '203.0.113.7', origin: 'web-1', bantime: 'garbage' }));
    expect(result.ok && result.event).to.deep.include({ action: 'unban', origin: 'web-1' });
  });

  it('encodes the bantime only when there is one, so that a ban until unbanned is the payload it always was', () => {
    const address = mustParseAddress('203.0.113.7');
    expect(JSON.parse(encodePayload(address, { origin: 'web-1', bantime: 600 }))).to.deep.equal({ ip: '203.0.113.7', origin: 'web-1', bantime: 600 });
    expect(encodePayload(address, { origin: 'web-1', bantime: UNTIL_UNBANNED })).to.equal(encodePayload(address, { origin: 'web-1' }));
    expect(encodePayload(address, { origin: 'web-1' })).to.equal('{"ip":"203.0.113.7","origin":"web-1"}');
  });

  it('what a ban has left: its start plus its length minus now, rounded up, never more than its length', () => {
    const now = 1_800_000_000_000;
    expect(remainingBantime(600, now / 1000 - 100, now)).to.equal(500);
    expect(remainingBantime(600, now / 1000 - 99.5, now), 'rounded up: never early').to.equal(501);
    expect(remainingBantime(600, now / 1000 - 700, now), 'over already').to.equal(0);
    expect(remainingBantime(600, now / 1000 + 50, now), 'a start ahead of the clock').to.equal(600);
    expect(remainingBantime(-1, now / 1000, now)).to.equal(UNTIL_UNBANNED);
    expect(remainingBantime(MAX_BANTIME_S * 2, now / 1000, now), 'longer than a message may carry').to.equal(UNTIL_UNBANNED);
  });

  describe('snapshots', () => {
    it("carry each address's bantime in a list of their own, beside ips, which receivers of an earlier version read alone", () => {
      const [payload] = encodeSnapshot('web-1', ['203.0.113.1', '203.0.113.2'], [600, UNTIL_UNBANNED]);
      const json = JSON.parse(payload!);
      expect(json.ips).to.deep.equal(['203.0.113.1', '203.0.113.2']);
      expect(json.bantimes).to.deep.equal([600, -1]);
      const decoded = decodePart(payload!);
      expect(decoded.ok && decoded.part.bantimes).to.deep.equal([600, -1]);
    });

    it('leave bantimes out when every ban lasts until unbanned, as before', () => {
      const [payload] = encodeSnapshot('web-1', ['203.0.113.1'], [UNTIL_UNBANNED]);
      expect(JSON.parse(payload!)).to.not.have.property('bantimes');
      expect(encodeSnapshot('web-1', ['203.0.113.1'])[0]).to.not.include('bantimes');
      const decoded = decodePart(payload!);
      expect(decoded.ok && decoded.part).to.not.have.property('bantimes');
    });

    it('stay within 64 KiB a part with the bantimes counted in', () => {
      const addresses = Array.from({ length: 20_000 }, (_, i) => `2001:db8::${i.toString(16)}:${((i * 7) % 65_536).toString(16)}`);
      const payloads = encodeSnapshot('web-1', addresses, addresses.map((_, i) => MAX_BANTIME_S - i));
      expect(payloads.length).to.be.at.least(2);
      for (const payload of payloads) expect(Buffer.byteLength(payload)).to.be.at.most(MAX_SNAPSHOT_PART_BYTES);
      const decoded = payloads.map((payload) => decodePart(payload));
      expect(decoded.flatMap((result) => (result.ok ? result.part.bantimes! : []))).to.deep.equal(addresses.map((_, i) => MAX_BANTIME_S - i));
    });

    it('an entry with a bad bantime is left out and counted with its address; a list of another length refuses the part', () => {
      const base = { origin: 'web-1', id: '0123456789abcdef', part: 0, parts: 1, ips: ['203.0.113.1', '203.0.113.2', '203.0.113.3'] };
      const decoded = decodePart(JSON.stringify({ ...base, bantimes: [60, 'x', -5] }));
      expect(decoded.ok && decoded.part.ips).to.deep.equal(['203.0.113.1']);
      expect(decoded.ok && decoded.part).to.deep.include({ bantimes: [60], invalid: 2 });
      expect(decodePart(JSON.stringify({ ...base, bantimes: [60] }))).to.deep.include({ ok: false, reason: 'bad-payload' });
      expect(decodePart(JSON.stringify({ ...base, bantimes: 60 }))).to.deep.include({ ok: false, reason: 'bad-payload' });
    });
  });
});
