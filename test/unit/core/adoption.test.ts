/** Upgrade adoption in-process: what the sync jails and a bridge state file of an earlier version held goes into the holdings store, once. */
import { expect } from 'chai';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Adoption } from '../../../agent/fleet/adoption.js';
import { FleetState } from '../../../agent/fleet/fleet-state.js';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { Projection, type Follower } from '../../../agent/fleet/projection.js';
import { mustParseAddress } from '../../../src/ip.js';
import { captureLog } from '../../support/capture-log.js';

describe('upgrade adoption: the first start with a holdings store', () => {
  let dir: string;
  let open: FleetState[];
  const syncJails = new Projection(new Map([['sshd', 'sshd-sync'], ['web', 'web-sync']]), 'host-b');

  /** A start of the agent: the store loaded, the adoption begun; `expect` the sync jails a fail2ban sink would adopt from. */
  function start(expected: string[] = ['sshd-sync', 'web-sync']) {
    const holdings = new Holdings();
    const sink: Follower = { projection: syncJails, submit: () => undefined };
    const fleet = new FleetState(holdings, dir, [sink], captureLog().log);
    open.push(fleet);
    const adoption = new Adoption(dir);
    adoption.expectSyncJails(expected);
    adoption.begin(fleet, fleet.load().fresh);
    return { fleet, holdings, adoption };
  }

  async function restart() {
    for (const fleet of open) await fleet.close();
    open = [];
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sf2b-adoption-'));
    open = [];
  });
  afterEach(async () => {
    await restart();
    await rm(dir, { recursive: true, force: true });
  });

  it("adopts each sync jail's content as held by nobody known, but what the store holds through it and what is not an address", () => {
    const { fleet, holdings, adoption } = start();
    fleet.apply({ jail: 'sshd', action: 'ban', address: mustParseAddress('203.0.113.1'), origin: 'host-a' });
    expect(adoption.pendingFor('sshd-sync')).to.equal(true);
    expect(adoption.syncJail(syncJails, 'sshd-sync', new Set(['203.0.113.1', '203.0.113.2', 'not-an-address']))).to.equal(1);
    expect(holdings.origins('sshd', '203.0.113.2')).to.deep.equal(['@adopted']);
    expect(holdings.origins('sshd', '203.0.113.1')).to.deep.equal(['host-a']);
    expect(adoption.pendingFor('sshd-sync'), 'once per sync jail').to.equal(false);
  });

  it('stays pending across restarts until every sync jail was adopted, then never adopts again', async () => {
    const first = start();
    first.adoption.syncJail(syncJails, 'sshd-sync', new Set(['203.0.113.3']));
    expect(await readdir(dir)).to.include('holdings.adopting');
    await restart();

    const second = start();
    expect(second.adoption.pendingFor('sshd-sync'), 'cut short: adopted again').to.equal(true);
    expect(second.adoption.pendingFor('web-sync')).to.equal(true);
    second.adoption.syncJail(syncJails, 'sshd-sync', new Set());
    second.adoption.syncJail(syncJails, 'web-sync', new Set(['203.0.113.4']));
    expect(await readdir(dir)).to.not.include('holdings.adopting');
    await restart();

    const third = start();
    expect(third.adoption.pendingFor('sshd-sync')).to.equal(false);
    expect(third.fleet.status().holdings).to.deep.equal({ sshd: { '@adopted': 1 }, web: { '@adopted': 1 } });
  });

  it('without sync jails to adopt from, ends at once', async () => {
    start([]);
    expect(await readdir(dir)).to.not.include('holdings.adopting');
  });

  it("takes the holders a bridge state file of an earlier version kept, the last journal record of an address winning, on the very first start only", async () => {
    const { fleet, adoption } = start();
    adoption.bridgeHolders(
      [
        ['bans', '203.0.113.5', 'host-a/sshd'],
        ['bans', '203.0.113.5', '@manual/sshd'],
        ['bans', '203.0.113.6', 'mallory!/sshd'],
      ],
      [
        ['bans', '203.0.113.7', ['host-c/web']],
        ['bans', '203.0.113.7', null],
      ],
    );
    expect(fleet.status().holdings).to.deep.equal({ sshd: { 'host-a': 1, '@manual': 1, '@adopted': 1 }, web: { 'host-c': 1 } });
    await restart();

    const again = start();
    again.adoption.bridgeHolders([['bans', '203.0.113.8', 'host-a/sshd']], []);
    expect(again.fleet.status().total, 'not on a later start').to.equal(4);
  });
});
