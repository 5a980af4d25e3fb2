import { expect } from 'chai';
import { readActionListing, readBanListing, withTime, type SkippedLine } from '../../../cli/ban-listing.js';
import { remainingBantime, UNTIL_UNBANNED } from '../../../src/bantime.js';
import { parseAddress } from '../../../src/ip.js';

/** A line of `get <jail> banip --with-time` as fail2ban 1.0 prints it. */
function line(entry: string, start: Date, lengthS: number): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  const local = (date: Date) => `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  const end = lengthS < 0 ? '9999-12-31 23:59:59' : local(new Date(start.getTime() + lengthS * 1000));
  return `${entry} \t${local(start)} + ${lengthS} = ${end}`;
}

/** The same lines read another way: a regular expression, a Date per line, the full parse of each address. */
function reference(lines: readonly string[], nowMs: number): Array<{ address: string; bantime: number }> {
  const pattern = /^(.*?) \t(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) \+ (-?\d+) = /;
  return lines.flatMap((text) => {
    const fields = pattern.exec(text);
    const parsed = fields ? parseAddress(fields[1]!) : undefined;
    if (!fields || !parsed?.ok) return [];
    const [year, month, day, hour, minute, second, length] = fields.slice(2).map(Number) as [number, number, number, number, number, number, number];
    const startS = new Date(year, month - 1, day, hour, minute, second).getTime() / 1000;
    return [{ address: parsed.address.text, bantime: length < 0 ? UNTIL_UNBANNED : remainingBantime(length, startS + 1, nowMs) }];
  });
}

describe("-f reads fail2ban's listing of a jail's bans with their times", () => {
  const now = Date.now();
  const secondsAgo = (seconds: number) => new Date(Math.floor(now / 1000) * 1000 - seconds * 1000);

  it('each ban with the time it has left, as the full parse reads it; lines that are not valid bans skipped and reported', () => {
    const lines = [
      line('203.0.113.7', secondsAgo(100), 600),
      line('2001:DB8:0:0::1', secondsAgo(5), 3600),
      line('10.1.2.3/24', secondsAgo(5), 3600),
      line('198.51.100.9', secondsAgo(50), -1),
      line('192.0.2.1', secondsAgo(7200), 600),
      line('010.0.0.1', secondsAgo(5), 600),
      line('not-an-address', secondsAgo(5), 600),
      '192.0.2.2 \t2026-1-04 10:00:00 + 600 = 2026-12-04 10:10:00',
      '192.0.2.3 \t2026-12-04 10:00:00 + 600.5 = 2026-12-04 10:10:00',
      '192.0.2.4 \t2026-12-04 10:00:00 - 600 = 2026-12-04 10:10:00',
      '192.0.2.5 2026-12-04 10:00:00 + 600 = 2026-12-04 10:10:00',
      '192.0.2.6 \t2026-12-04 10:00:00 + 600',
    ];
    const skipped: SkippedLine[] = [];
    const bans = readBanListing([...lines, 42], now, (skip) => skipped.push(skip));
    expect(bans).to.deep.equal(reference(lines, now));
    expect(bans.map((ban) => ban.address)).to.deep.equal(['203.0.113.7', '2001:db8::1', '10.1.2.0/24', '198.51.100.9', '192.0.2.1']);
    expect(bans[0]!.bantime).to.be.within(499, 501);
    expect(bans[3]!.bantime).to.equal(UNTIL_UNBANNED);
    expect(bans[4]!.bantime).to.equal(0);
    expect(skipped.map((skip) => skip.entry)).to.deep.equal(['010.0.0.1', 'not-an-address', ...lines.slice(7).map((text) => text.slice(0, 100)), '42']);
    expect(skipped.slice(2).every((skip) => skip.reason === 'not a ban with its time')).to.equal(true);
  });

  it('100,000 lines of many starts read as the full parse reads them', () => {
    const lines = Array.from({ length: 100_000 }, (_, i) => line(`${70 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.${1 + (i % 200)}`, secondsAgo(i % 4000), i % 7 === 0 ? -1 : 3600));
    expect(readBanListing(lines, now, () => expect.fail('no line is invalid'))).to.deep.equal(reference(lines, now));
  });

  it('a start in the hour that repeats when summer time ends is the later of the two: the ban ends late, never early', () => {
    const saved = process.env.TZ;
    process.env.TZ = 'Europe/Berlin';
    try {
      // 2026-10-25: clocks go back from 03:00 CEST to 02:00 CET; 02:30:15 happens at 00:30:15 and at 01:30:15 UTC.
      const later = Date.UTC(2026, 9, 25, 1, 30, 15);
      const lines = ['192.0.2.1 \t2026-10-25 02:30:15 + 600 = 2026-10-25 02:40:15', '192.0.2.2 \t2026-10-25 02:30:45 + 600 = 2026-10-25 02:40:45'];
      expect(readBanListing(lines, later + 60_000, () => expect.fail('no line is invalid')).map((ban) => ban.bantime)).to.deep.equal([541, 571]);
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });

  it('a line is taken apart at its first " \\t"; the start as its digits, the length signed', () => {
    expect(withTime('192.0.2.1 \t2026-12-04 10:00:09 + -1 = 9999-12-31 23:59:59')).to.deep.equal({ entry: '192.0.2.1', start: 20261204100009, length: -1 });
    expect(withTime('a \tb \t2026-12-04 10:00:09 + 5 = x')).to.equal(undefined);
    expect(withTime(' \t2026-12-04 10:00:09 + 5 = x')).to.deep.equal({ entry: '', start: 20261204100009, length: 5 });
    expect(withTime('192.0.2.1 \t2026-12-04 10:00:09 +  5 = x')).to.equal(undefined);
    expect(withTime('192.0.2.1 \t2026-12-04 10:00:09 + - = x')).to.equal(undefined);
  });

  it("the Python action's listing: each ban with the time it has left from its start to the millisecond; what is not a valid ban skipped and reported", () => {
    const at = (secondsAgo: number) => (now / 1000 - secondsAgo).toFixed(3);
    const text = [
      `203.0.113.7 ${at(100)} 600`,
      `2001:DB8:0:0::1 ${at(5)} 3600`,
      `10.1.2.3/24 ${at(5)} 3600`,
      `198.51.100.9 ${at(50)} -1`,
      `192.0.2.1 ${at(7200)} 600`,
      `010.0.0.1 ${at(5)} 600`,
      '! x;touch?F',
      `192.0.2.2 ${at(5)}`,
      `192.0.2.3 soon 600`,
      `192.0.2.4 ${at(5)} 600.5`,
      `192.0.2.5 ${at(5)} -2`,
      `192.0.2.6 -5 600`,
      '',
    ].join('\n');
    const skipped: SkippedLine[] = [];
    const bans = readActionListing(text, now, (skip) => skipped.push(skip));
    expect(bans).to.deep.equal([
      { address: '203.0.113.7', bantime: 500 },
      { address: '2001:db8::1', bantime: 3595 },
      { address: '10.1.2.0/24', bantime: 3595 },
      { address: '198.51.100.9', bantime: UNTIL_UNBANNED },
      { address: '192.0.2.1', bantime: 0 },
    ]);
    expect(skipped.map((skip) => [skip.entry, skip.reason === 'not a ban with its time'])).to.deep.equal([
      ['010.0.0.1', false],
      ['x;touch?F', false],
      ...text.split('\n').slice(7, 12).map((line) => [line, true]),
    ]);
    expect(skipped[1]!.reason).to.equal('not an IP address or network');
    expect(readActionListing('', now, () => expect.fail('nothing to skip'))).to.deep.equal([]);
  });
});
