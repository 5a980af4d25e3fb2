import { expect } from 'chai';
import { decodeEvent, MAX_PAYLOAD_BYTES } from '../../../src/event.js';

const decode = (topic: string, payload: string | Buffer) => decodeEvent(topic, Buffer.isBuffer(payload) ? payload : Buffer.from(payload));

describe('message contract', () => {
  it('takes a bare address, as mosquitto_pub -m sends it', () => {
    const result = decode('f2b/sshd/ban', '203.0.113.7');
    expect(result).to.deep.include({ ok: true });
    if (!result.ok) return;
    expect(result.event).to.deep.include({ jail: 'sshd', action: 'ban' });
    expect(result.event.address.text).to.equal('203.0.113.7');
    expect(result.event.origin).to.equal(undefined);
  });

  it('takes JSON with origin and ignores extra fields', () => {
    const result = decode('f2b/sshd/unbanip', JSON.stringify({ ip: '2001:DB8::7', origin: 'web-1', at: 123 }));
    expect(result.ok && result.event).to.deep.include({ action: 'unban', origin: 'web-1' });
    expect(result.ok && result.event.address.text).to.equal('2001:db8::7');
  });

  it('accepts banip and a trailing newline', () => {
    const result = decode('f2b/sshd/banip', '203.0.113.7\n');
    expect(result.ok && result.event.action).to.equal('ban');
  });

  const refusals: Array<[string, string | Buffer, string]> = [
    ['f2b/sshd/ban/extra', '203.0.113.7', 'bad-topic'],
    ['other/sshd/ban', '203.0.113.7', 'bad-topic'],
    ['f2b/ss hd/ban', '203.0.113.7', 'bad-jail-name'],
    ['f2b/../ban', '203.0.113.7', 'bad-jail-name'],
    ['f2b/sshd/flush', '203.0.113.7', 'unknown-action'],
    ['f2b/sshd/__proto__', '203.0.113.7', 'unknown-action'],
    ['f2b/sshd/ban', 'x'.repeat(MAX_PAYLOAD_BYTES + 1), 'oversized'],
    ['f2b/sshd/ban', Buffer.from([0xff, 0xfe, 0x00, 0x41]), 'bad-payload'],
    ['f2b/sshd/ban', '{"ip": 42}', 'bad-payload'],
    ['f2b/sshd/ban', '{"ip": ["1.2.3.4"]}', 'bad-payload'],
    ['f2b/sshd/ban', '[1,2]', 'bad-address'],
    ['f2b/sshd/ban', '{"ip": "1.2.3.4"', 'bad-payload'],
    ['f2b/sshd/ban', '{"ip": "1.2.3.4", "origin": 7}', 'bad-origin'],
    ['f2b/sshd/ban', '{"ip": "1.2.3.4", "origin": "a b"}', 'bad-origin'],
    ['f2b/sshd/ban', '{"ip": "1.2.3.4;reboot"}', 'bad-address'],
    ['f2b/sshd/ban', 'x;touch /tmp/pwned', 'bad-address'],
    ['f2b/sshd/ban', '*', 'bad-address'],
    ['f2b/sshd/ban', '', 'bad-address'],
  ];
  for (const [topic, payload, reason] of refusals) {
    it(`refuses ${topic} ${JSON.stringify(payload.toString().slice(0, 30))} as ${reason}`, () => {
      expect(decode(topic, payload)).to.deep.include({ ok: false, reason });
    });
  }
});
