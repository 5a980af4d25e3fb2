import { expect } from 'chai';
import { openFrame, sealFrame, type BusMessage } from '../../../broker/bus-frame.js';

const KEY = 'a'.repeat(64);
const MESSAGE: BusMessage = { sender: '6f9b0c1e-2d3a-4b5c-8d7e-0f1a2b3c4d5e', seq: 7, time: 1_700_000_000_000, topic: 'f2b/sshd/ban', payload: Buffer.from('{"ip":"203.0.113.7","origin":"web1"}'), qos: 1, counter: 42 };

describe('cluster bus frames: signed with cluster_key, checked before they are read', () => {
  it('a frame opens with the key it was sealed with, unchanged', () => {
    const opened = openFrame(KEY, sealFrame(KEY, MESSAGE));
    expect(opened).to.deep.equal({ ok: true, message: MESSAGE });
  });

  it('another key, a changed byte anywhere, or anything that is not a frame is refused as unsigned', () => {
    const frame = sealFrame(KEY, MESSAGE);
    expect(openFrame('b'.repeat(64), frame)).to.include({ ok: false, reason: 'cluster-unsigned' });
    for (const at of [5, 40, 45, frame.length - 1]) {
      const changed = Buffer.from(frame);
      changed[at]! ^= 1;
      expect(openFrame(KEY, changed), `byte ${at}`).to.include({ ok: false, reason: 'cluster-unsigned' });
    }
    for (const junk of [Buffer.alloc(0), Buffer.from('203.0.113.9'), frame.subarray(0, 40)]) expect(openFrame(KEY, junk)).to.include({ ok: false, reason: 'cluster-unsigned' });
  });

  it('a signed frame whose header is not what an instance writes is refused as malformed', () => {
    const bad = sealFrame(KEY, { ...MESSAGE, qos: 3 as 1 });
    expect(openFrame(KEY, bad)).to.include({ ok: false, reason: 'cluster-malformed' });
    const noSender = sealFrame(KEY, { ...MESSAGE, sender: '' });
    expect(openFrame(KEY, noSender)).to.include({ ok: false, reason: 'cluster-malformed' });
  });
});
