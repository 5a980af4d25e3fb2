import { expect } from 'chai';
import { pino } from 'pino';
import type { Change } from '../../../agent/fleet/projection.js';
import { Batcher, type Backend, type Rejection } from '../../../agent/sinks/batcher.js';
import { waitFor } from '../../support/wait.js';

/** A target that records batches and can be told to fail, standing for fail2ban or a firewall. */
class RecordingTarget implements Backend {
  readonly name = 'recording';
  batches: Change[][] = [];
  failing = false;
  /** Targets that refuse their changes, as fail2ban does a jail it does not have. */
  refusing = new Set<string>();
  async apply(batch: Change[]): Promise<Rejection[]> {
    if (this.failing) throw new Error('target down');
    const refused = batch.filter((change) => this.refusing.has(change.target));
    this.batches.push(batch.filter((change) => !this.refusing.has(change.target)));
    return refused.map((change) => ({ change, problem: { what: `${change.target} refuses`, fix: `add ${change.target}` } }));
  }
  get state(): Map<string, string> {
    const state = new Map<string, string>();
    for (const change of this.batches.flat()) state.set(`${change.target} ${change.address}`, change.action);
    return state;
  }
}

/** A target that takes `msPerChange` for each change, as a sync jail with a banaction does (one process per address). */
class SlowTarget extends RecordingTarget {
  constructor(private readonly msPerChange: number) {
    super();
  }
  override async apply(batch: Change[]): Promise<Rejection[]> {
    await new Promise((resolve) => setTimeout(resolve, batch.length * this.msPerChange));
    return super.apply(batch);
  }
}

const quiet = pino({ level: 'silent' });
const ban = (address: string, target = 'sshd-sync'): Change => ({ target, action: 'ban', address });
const unban = (address: string, target = 'sshd-sync'): Change => ({ target, action: 'unban', address });

describe('sink batching', () => {
  it('commits what arrives together as one batch, the last change per address winning', async () => {
    const target = new RecordingTarget();
    const sink = new Batcher(target, quiet, { windowMs: 20 });
    sink.submit(ban('203.0.113.1'));
    sink.submit(ban('203.0.113.2'));
    sink.submit(unban('203.0.113.1'));
    sink.submit(ban('203.0.113.2', 'web-sync'));
    await waitFor(() => sink.stats().applied === 3, 'the batch');
    expect(target.batches).to.have.length(1);
    expect([...target.state]).to.have.deep.members([
      ['sshd-sync 203.0.113.1', 'unban'],
      ['sshd-sync 203.0.113.2', 'ban'],
      ['web-sync 203.0.113.2', 'ban'],
    ]);
  });

  it('keeps taking changes while the target is down and delivers them, newest change winning, when it is back', async () => {
    const target = new RecordingTarget();
    target.failing = true;
    const sink = new Batcher(target, quiet, { windowMs: 5, retryInitialMs: 10, retryMaxMs: 40 });
    sink.submit(ban('203.0.113.3'));
    await waitFor(() => sink.stats().failures >= 2, 'retries');
    expect(sink.submit(ban('203.0.113.4'))).to.equal(true);
    expect(sink.submit(unban('203.0.113.3'))).to.equal(true);
    expect(sink.stats()).to.include({ backlog: 2, lastError: 'target down' });
    target.failing = false;
    await waitFor(() => sink.stats().backlog === 0, 'the backlog to drain');
    expect([...target.state]).to.have.deep.members([
      ['sshd-sync 203.0.113.3', 'unban'],
      ['sshd-sync 203.0.113.4', 'ban'],
    ]);
    expect(sink.stats().lastError).to.equal(null);
  });

  it('drops and counts beyond its bound instead of growing without limit', async () => {
    const target = new RecordingTarget();
    target.failing = true;
    const sink = new Batcher(target, quiet, { windowMs: 5, maxPending: 3, retryInitialMs: 1_000 });
    const accepted = ['1', '2', '3', '4', '5'].map((n) => sink.submit(ban(`203.0.113.${n}`)));
    expect(accepted).to.deep.equal([true, true, true, false, false]);
    expect(sink.submit(unban('203.0.113.2')), 'a newer change for a held address still fits').to.equal(true);
    expect(sink.stats().dropped).to.deep.equal({ refused: 0, 'queue-full': 2, 'shutting-down': 0 });
    await sink.stop(50);
  });

  it('counts what a target refused as dropped, per target, with its problem until a change to it goes through', async () => {
    const target = new RecordingTarget();
    target.refusing.add('gone-sync');
    const sink = new Batcher(target, quiet, { windowMs: 5 });
    sink.submit(ban('203.0.113.9'));
    sink.submit(ban('203.0.113.10', 'gone-sync'));
    sink.submit(ban('203.0.113.11', 'gone-sync'));
    await waitFor(() => sink.stats().backlog === 0 && target.batches.length === 1, 'the batch');
    const stats = sink.stats();
    expect(stats).to.include({ submitted: 3, applied: 1 });
    expect(stats.dropped).to.deep.equal({ refused: 2, 'queue-full': 0, 'shutting-down': 0 });
    expect(stats.refused).to.deep.equal({ 'gone-sync': 2 });
    expect(stats.targetProblems).to.deep.equal({ 'gone-sync': { what: 'gone-sync refuses', fix: 'add gone-sync' } });

    target.refusing.clear();
    sink.submit(ban('203.0.113.12', 'gone-sync'));
    await waitFor(() => sink.stats().applied === 2, 'the change that goes through');
    expect(sink.stats().targetProblems).to.deep.equal({});
    expect(sink.stats().refused, 'the count stays').to.deep.equal({ 'gone-sync': 2 });
    await sink.stop(100);
  });

  it('on stop, flushes what it accepted and refuses anything new', async () => {
    const target = new RecordingTarget();
    const sink = new Batcher(target, quiet, { windowMs: 10_000 });
    sink.submit(ban('203.0.113.6'));
    expect(await sink.stop(5_000)).to.equal(true);
    expect(target.state.get('sshd-sync 203.0.113.6')).to.equal('ban');
    expect(sink.submit(ban('203.0.113.7'))).to.equal(false);
  });

  it('on stop with the target down, gives up at the deadline and says so', async () => {
    const target = new RecordingTarget();
    target.failing = true;
    const sink = new Batcher(target, quiet, { windowMs: 1, retryInitialMs: 10 });
    sink.submit(ban('203.0.113.8'));
    expect(await sink.stop(100)).to.equal(false);
    expect(sink.stats().backlog).to.equal(1);
  });

  it('a ban queued behind 20,000 unbans (a release) goes in the next batch, and each address ends as its last change says', async () => {
    const target = new RecordingTarget();
    const sink = new Batcher(target, quiet, { windowMs: 5, maxBatch: 5_000 });
    for (let i = 0; i < 20_000; i++) sink.submit(unban(`10.0.${i >> 8}.${i & 255}`, 'web-sync'));
    sink.submit(ban('203.0.113.9'));
    // An address banned then unbanned keeps its order: only the unban is left.
    sink.submit(ban('10.9.0.1', 'web-sync'));
    sink.submit(unban('10.9.0.1', 'web-sync'));
    await waitFor(() => sink.stats().backlog === 0, 'the backlog to drain');
    const batchOfBan = target.batches.findIndex((batch) => batch.some((change) => change.address === '203.0.113.9'));
    expect(batchOfBan, 'not behind the 20,000 unbans').to.be.at.most(1);
    expect(target.state.get('web-sync 10.9.0.1')).to.equal('unban');
    expect(target.batches.flat().filter((change) => change.action === 'unban')).to.have.length(20_001);
  });

  it('with unbanBatchMs, a batch holds the unbans the target gets through in that time: a ban queued behind a slow release waits that long, not for 5,000 unbans', async () => {
    const target = new SlowTarget(2);
    const sink = new Batcher(target, quiet, { windowMs: 5, unbanBatchMs: 40 });
    for (let i = 0; i < 600; i++) sink.submit(unban(`10.0.${i >> 8}.${i & 255}`, 'web-sync'));
    await waitFor(() => target.batches.flat().length >= 60, 'the release under way');
    const batchesBefore = target.batches.length;
    sink.submit(ban('203.0.113.9'));
    await waitFor(() => sink.stats().backlog === 0, 'the backlog to drain', 60_000);
    const unbans = target.batches.map((batch) => batch.filter((change) => change.action === 'unban').length);
    // 40 ms at 2 ms an unban: 20 (a target slower than that, on a loaded machine, only makes it fewer).
    expect(Math.max(...unbans), `unbans per batch: ${unbans.join(' ')}`).to.be.at.most(20);
    expect(unbans.reduce((sum, count) => sum + count, 0)).to.equal(600);
    const batchOfBan = target.batches.findIndex((batch) => batch.some((change) => change.address === '203.0.113.9'));
    expect(batchOfBan, 'right after the batch in flight').to.be.at.most(batchesBefore + 1);
  });
});
