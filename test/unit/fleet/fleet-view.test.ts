import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetView, MOST_HELD_SHOWN } from '../../../agent/fleet/fleet-view.js';
import { Holdings } from '../../../agent/fleet/holdings.js';
import { renderFleet } from '../../../cli/fleet-text.js';
import { requestFleet, requestOwnSnapshots, requestStatus, StatusUnavailable } from '../../../src/control-protocol.js';
import { ControlServer } from '../../../src/reporting/control-server.js';
import type { Reporter } from '../../../src/reporting/reporter.js';
import { captureLog } from '../../support/capture-log.js';

/** Holdings of a small fleet: web1 and web2 hold some sshd bans together, db1 one web ban. */
function smallFleet(): Holdings {
  const holdings = new Holdings({ total: 1_000_000, perOrigin: 100_000 });
  for (let i = 1; i <= 30; i++) holdings.add('web1', 'sshd', `198.51.100.${i}`);
  for (let i = 1; i <= 12; i++) holdings.add('web2', 'sshd', `198.51.100.${i}`);
  for (let i = 1; i <= 3; i++) holdings.add('db1', 'sshd', `198.51.100.${i}`);
  holdings.add('db1', 'web', '203.0.113.9');
  return holdings;
}

describe('the fleet view (syncfail2ban-client status --fleet)', () => {
  const now = Date.parse('2026-12-04T12:00:00Z');
  const heard = new Map([['web1', new Date(now - 65_000)], ['quiet', new Date(now - 5_000)]]);

  it('per jail: holdings per origin, the most first; the addresses the most origins hold', () => {
    const view = fleetView('here', smallFleet(), heard);
    expect(view.nodeId).to.equal('here');
    expect(view.jails.map((jail) => jail.jail)).to.deep.equal(['sshd', 'web']);
    const [sshd, web] = view.jails;
    expect(sshd!.addresses).to.equal(30);
    expect(sshd!.origins).to.deep.equal([{ origin: 'web1', holdings: 30 }, { origin: 'web2', holdings: 12 }, { origin: 'db1', holdings: 3 }]);
    expect(sshd!.mostHeld).to.have.length(MOST_HELD_SHOWN);
    expect(sshd!.mostHeld.slice(0, 3).map((entry) => entry.origins)).to.deep.equal([['db1', 'web1', 'web2'], ['db1', 'web1', 'web2'], ['db1', 'web1', 'web2']]);
    expect(sshd!.mostHeld.slice(0, 3).map((entry) => entry.address).sort()).to.deep.equal(['198.51.100.1', '198.51.100.2', '198.51.100.3']);
    expect(sshd!.mostHeld.slice(3).every((entry) => entry.origins.length === 2)).to.equal(true);
    expect(web).to.deep.equal({ jail: 'web', addresses: 1, origins: [{ origin: 'db1', holdings: 1 }], mostHeld: [] });
    expect(view.lastEvents.web1).to.equal(heard.get('web1')!.toISOString());
  });

  it('reads as text: origins with their last event, shared addresses, origins heard from that hold nothing', () => {
    const text = renderFleet(fleetView('here', smallFleet(), heard), now);
    expect(text).to.match(/^fleet as here holds it: 2 jail\(s\)$/m);
    expect(text).to.match(/^jail sshd: 30 address\(es\) held by 3 origin\(s\)$/m);
    expect(text).to.match(/^ {2}web1 +30 {2}1m 5s ago$/m);
    expect(text).to.match(/^ {2}db1 +3 {2}-$/m);
    expect(text).to.match(/^ {4}198\.51\.100\.\d {2}3: db1, web1, web2$/m);
    expect(text).to.include('held by more than one origin: none');
    expect(text).to.match(/^heard from, holding nothing here: quiet \(5s ago\)$/m);
  });

  describe('over the control socket', () => {
    let dir: string;
    let server: ControlServer;
    const start = async (reporter: Partial<Reporter>) => {
      const { log } = captureLog();
      server = new ControlServer(join(dir, 'control.sock'), { program: 'syncfail2ban', key: (name) => name, status: () => ({ nodeId: 'here', topology: 'hub', dryRun: false, parts: [] }), log, ...reporter });
      await server.start();
    };

    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sf2b-fleet-view-'));
    });
    afterEach(async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('the agent answers "fleet" with its view, and "status" as before', async () => {
      const holdings = smallFleet();
      await start({ fleet: () => fleetView('here', holdings, heard) });
      const view = await requestFleet(join(dir, 'control.sock'), 5_000);
      expect(view.jails[0]!.origins[0]).to.deep.equal({ origin: 'web1', holdings: 30 });
      expect((await requestStatus(join(dir, 'control.sock'), 5_000)).status.nodeId).to.equal('here');
    });

    it('the agent answers "snapshots" (what -f asks until its snapshot is back) without building its status', async () => {
      const own = [{ jail: 'sshd', id: '00000000000000ab', complete: false, partsReceived: 3 }];
      await start({
        ownSnapshots: () => own,
        status: () => {
          throw new Error('status built');
        },
      });
      expect(await requestOwnSnapshots(join(dir, 'control.sock'), 5_000)).to.deep.equal(own);
    });

    it('a program without a fleet (syncfail2ban-broker) says so', async () => {
      await start({ program: 'syncfail2ban-broker' });
      for (const ask of [requestFleet, requestOwnSnapshots]) {
        const error = await ask(join(dir, 'control.sock'), 5_000).catch((caught: unknown) => caught);
        expect(error).to.be.instanceOf(StatusUnavailable);
        expect((error as Error).message).to.match(/unknown command "(fleet|snapshots)"; the commands are "status"/);
      }
    });
  });
});
