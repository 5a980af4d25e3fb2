import { expect } from 'chai';
import { parseActionLine } from '../../../agent/publishing/action-line.js';

const SYNC_JAILS = new Set(['sshd-sync']);
const parse = (line: string) => parseActionLine(line, SYNC_JAILS);

describe("the action socket's line protocol", () => {
  it("takes a ban with fail2ban's ban time, bantime and bancount", () => {
    const result = parse('ban sshd 203.0.113.7 1733312000.250 600 3');
    expect(result.ok).to.equal(true);
    if (!result.ok) return;
    expect(result.event).to.deep.include({ action: 'ban', jail: 'sshd', start: 1733312000.25, bantime: 600, bancount: 3 });
    expect(result.event.address.text).to.equal('203.0.113.7');
  });

  it('takes a ban until unbanned (bantime -1), a prolonged ban as a ban with its new length, and an unban', () => {
    const permanent = parse('ban sshd 203.0.113.7 1733312000 -1 1');
    expect(permanent.ok && permanent.event).to.deep.include({ action: 'ban', bantime: -1 });
    const prolong = parse('prolong sshd 203.0.113.7 1733312000 1200 2');
    expect(prolong.ok && prolong.event).to.deep.include({ action: 'ban', start: 1733312000, bantime: 1200, bancount: 2 });
    expect(parse('unban web 10.1.2.0/24 1733312000.5 600 1')).to.deep.nested.include({ ok: true, 'event.action': 'unban', 'event.address.text': '10.1.2.0/24' });
  });

  it('canonicalises the address as every peer will', () => {
    const result = parse('ban sshd 2001:DB8:0:0::1 1733312000 600 1');
    expect(result.ok && result.event.address.text).to.equal('2001:db8::1');
  });

  const refused: Array<[line: string, reason: string, detail: RegExp]> = [
    ['', 'malformed', /has 1 field/],
    ['ban sshd 203.0.113.7 1733312000 600', 'malformed', /has 5 field\(s\), not 6/],
    ['ban sshd 203.0.113.7 1733312000 600 1 extra', 'malformed', /not 6/],
    ['ban  sshd 203.0.113.7 1733312000 600 1', 'malformed', /not 6/],
    ['ban sshd 203.0.113.7 1733312000 600 1\r', 'malformed', /bancount/],
    ['flush sshd 203.0.113.7 1733312000 600 1', 'unknown-kind', /"flush" is not ban, prolong or unban/],
    ['__proto__ sshd 203.0.113.7 1733312000 600 1', 'unknown-kind', /not ban/],
    ['ban ../x 203.0.113.7 1733312000 600 1', 'bad-jail-name', /jail name/],
    ['ban sshd-sync 203.0.113.7 1733312000 600 1', 'sync-jail', /sshd-sync is a sync jail/],
    ['ban sshd 999.1.1.1 1733312000 600 1', 'bad-address', /"999.1.1.1": not an IP address/],
    ['ban sshd x;touch 1733312000 600 1', 'bad-address', /not an IP address/],
    ['ban sshd 10.0.0.0/4 1733312000 600 1', 'bad-address', /wider/],
    ['ban sshd 203.0.113.7 yesterday 600 1', 'malformed', /time "yesterday"/],
    ['ban sshd 203.0.113.7 1733312000 -5 1', 'malformed', /bantime "-5"/],
    ['ban sshd 203.0.113.7 1733312000 1e9 1', 'malformed', /bantime/],
    ['ban sshd 203.0.113.7 1733312000 600 -1', 'malformed', /bancount/],
    [`ban sshd 203.0.113.7 1733312000 600 ${'1'.repeat(300)}`, 'oversized', /exceeds 256/],
  ];
  for (const [line, reason, detail] of refused) {
    it(`refuses ${JSON.stringify(line.slice(0, 60))} (${reason})`, () => {
      const result = parse(line);
      expect(result.ok).to.equal(false);
      if (result.ok) return;
      expect(result.reason).to.equal(reason);
      expect(result.detail).to.match(detail);
    });
  }
});
