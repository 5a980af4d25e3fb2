import { expect } from 'chai';
import { pino } from 'pino';
import { HeapTrim } from '../../../agent/memory/heap-trim.js';
import type { AgentStatus, PartStatus } from '../../../src/status.js';
import { gauge } from '../../../src/status.js';
import { measured } from '../../support/status.js';

const MB = 1024 * 1024;

/** A heap whose size the test sets, and whose collections shrink it by the amounts given, in turn. */
class FakeHeap {
  size = 20 * MB;
  collections = 0;
  constructor(private readonly shrinks: number[] = []) {}
  gc = () => {
    this.size -= this.shrinks[this.collections] ?? 0;
    this.collections += 1;
  };
}

function agentWith(backlog: number): AgentStatus {
  const sink: PartStatus = { kind: 'sink', name: 'fail2ban', problems: [], measures: { backlog: gauge('changes waiting', backlog) }, details: {} };
  return { nodeId: 'n', topology: 'mesh', dryRun: false, parts: [sink] };
}

describe('heap trim: memory given back after bulk work', () => {
  const log = pino({ level: 'silent' });
  let backlog: number;
  let heap: FakeHeap;
  let trim: HeapTrim;

  function build(shrinks: number[]): void {
    backlog = 0;
    heap = new FakeHeap(shrinks);
    trim = new HeapTrim(() => agentWith(backlog), log, heap.gc, () => heap.size);
  }

  it('collects once the heap grew by 8 MB and stopped growing, again while collections still shrink it, one per turn', async () => {
    build([30 * MB, 12 * MB, 0.5 * MB]);
    heap.size += 7 * MB;
    expect(trim.check(), 'grown by 7 MB').to.equal(false);
    heap.size += 43 * MB;
    expect(trim.check(), 'still growing').to.equal(false);
    expect(trim.check(), 'grown by 50 MB and settled').to.equal(true);
    expect(heap.collections, 'one collection in this turn').to.equal(1);
    expect(trim.check(), 'a trim under way').to.equal(false);
    await trim.trimming;
    expect(heap.collections).to.equal(3);
    expect(heap.size).to.equal(27.5 * MB);
    expect(measured(trim.status(), 'trims')).to.equal(1);
    expect(measured(trim.status(), 'heap')).to.equal(27.5 * MB);
  });

  it('waits while a sink has a backlog: what it holds is still live', async () => {
    build([30 * MB, 0]);
    heap.size += 40 * MB;
    trim.check();
    backlog = 5_000;
    expect(trim.check()).to.equal(false);
    backlog = 0;
    expect(trim.check()).to.equal(true);
    await trim.trimming;
    expect(heap.collections).to.equal(2);
  });

  it('stops between two collections when a sink has a backlog again, and at stop', async () => {
    build([30 * MB, 20 * MB, 10 * MB]);
    heap.size += 60 * MB;
    trim.check();
    expect(trim.check()).to.equal(true);
    backlog = 1;
    await trim.trimming;
    expect(heap.collections, 'work came in after the first').to.equal(1);
    backlog = 0;
    heap.size += 60 * MB;
    trim.check();
    expect(trim.check()).to.equal(true);
    await trim.stop();
    expect(heap.collections, 'stopped after the first').to.equal(2);
  });

  it('measures growth from the heap after the last trim, or from less when V8 shrank it since', async () => {
    build([10 * MB, 0, 0, 0]);
    heap.size += 10 * MB;
    trim.check();
    expect(trim.check()).to.equal(true);
    await trim.trimming;
    heap.size += 7 * MB;
    trim.check();
    expect(trim.check(), '7 MB over the trimmed heap').to.equal(false);
    heap.size -= 10 * MB;
    trim.check();
    heap.size += 9 * MB;
    trim.check();
    expect(trim.check(), '9 MB over the smaller heap V8 left').to.equal(true);
  });

  it('is off without --expose-gc, and status says so', () => {
    const off = new HeapTrim(() => agentWith(0), log, undefined, () => 100 * MB);
    expect(off.check()).to.equal(false);
    expect(off.status().details.trim).to.match(/off: node runs without --expose-gc/);
    expect(off.status().problems).to.deep.equal([]);
  });
});
