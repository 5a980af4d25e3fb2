import { expect } from 'chai';
import { END_MARKER } from '../../../src/fail2ban/pickle.js';
import { ReplySplitter } from '../../../src/fail2ban/reply-splitter.js';

/** The replies the splitter finds in `stream` read in pieces of the given lengths (the last piece takes the rest). */
function split(stream: Buffer, pieces: number[]): string[] {
  const splitter = new ReplySplitter();
  const replies: Buffer[] = [];
  let at = 0;
  for (const length of [...pieces, stream.length]) {
    if (at >= stream.length) break;
    replies.push(...splitter.push(stream.subarray(at, at + length)));
    at += length;
  }
  return replies.map((reply) => reply.toString('latin1'));
}

const framed = (...replies: string[]) => Buffer.concat(replies.map((reply) => Buffer.concat([Buffer.from(reply, 'latin1'), END_MARKER])));

describe("fail2ban's replies cut at the end marker", () => {
  it('finds every reply wherever the reads split the stream, inside the marker too', () => {
    const stream = framed('first reply', '', 'third <F2B_END_COMMAN not the end', 'x');
    const expected = ['first reply', '', 'third <F2B_END_COMMAN not the end', 'x'];
    for (let cut = 1; cut < stream.length; cut++) {
      expect(split(stream, [cut]), `cut at ${cut}`).to.deep.equal(expected);
      for (let second = 1; second <= END_MARKER.length; second++) expect(split(stream, [cut, second]), `cuts at ${cut}, ${cut + second}`).to.deep.equal(expected);
    }
    expect(split(stream, Array.from({ length: stream.length }, () => 1)), 'a byte at a time').to.deep.equal(expected);
  });

  it('keeps what follows a reply for the next one', () => {
    const splitter = new ReplySplitter();
    expect(splitter.push(Buffer.concat([framed('one'), Buffer.from('tw')]))).to.deep.equal([Buffer.from('one')]);
    expect(splitter.push(Buffer.from('o'))).to.deep.equal([]);
    expect(splitter.push(END_MARKER).map(String)).to.deep.equal(['two']);
  });

  it('returns a large reply read 64 KiB at a time whole, once', () => {
    const body = Buffer.alloc(6_500_000, 'a');
    body.write('<F2B_END', 3_000_000, 'latin1');
    const replies = split(framed(body.toString('latin1')), Array.from({ length: 200 }, () => 64 * 1024));
    expect(replies).to.have.length(1);
    expect(replies[0] === body.toString('latin1')).to.equal(true);
  });
});
