import { expect } from 'chai';
import type { AgentStatus } from '../../agent/agent.js';
import { healthProblems } from '../../agent/health.js';
import { renderStatus } from '../../cli/status.js';

const NOW = Date.parse('2025-03-02T12:00:00.000Z');
const MINUTE_AGO = '2025-03-02T11:59:00.000Z';

/** Parts beyond the core (the bridge) are given loosely: the printer and the health check must not depend on their shape. */
function status(overrides: Record<string, unknown> = {}): AgentStatus {
  return {
    nodeId: 'web1',
    topology: 'mesh',
    embeddedBroker: 'mqtt://192.0.2.10:18862',
    links: [{ url: 'mqtt://192.0.2.10:18862', state: 'connected', since: MINUTE_AGO, lastError: null }],
    intake: { received: 3, accepted: 2, ownSkipped: 0, peersSeen: { web2: MINUTE_AGO } },
    refused: { 'bad-address': 1 },
    sinks: { fail2ban: { submitted: 2, applied: 2, dropped: 0, failures: 0, backlog: 0, lastError: null } },
    fleet: { stateDir: '/var/lib/syncfail2ban', holdings: { sshd: { web2: 1 } }, total: 1, unbansWithoutHolding: 0, refusedAtCap: 0, snapshots: [], lastError: null },
    syncJails: null,
    bridge: null,
    ...overrides,
  } as AgentStatus;
}

describe('status: what is healthy, and how parts the printer does not know are shown', () => {
  it('a connected agent with a working sink is healthy', () => {
    expect(healthProblems(status())).to.deep.equal([]);
  });

  it('a link not connected, a failing sink, and any lastError in other parts are problems', () => {
    const problems = healthProblems(
      status({
        links: [{ url: 'mqtt://192.0.2.12:18862', state: 'down', since: MINUTE_AGO, lastError: 'connect ECONNREFUSED 192.0.2.12:18862' }],
        sinks: { fail2ban: { submitted: 5, applied: 2, dropped: 0, failures: 4, backlog: 3, lastError: 'fail2ban is gone' } },
        bridge: { firewalls: [{ url: 'https://192.0.2.1', lastError: null }, { url: 'https://192.0.2.2', lastError: '401 Unauthorized' }] },
      }),
    );
    expect(problems).to.deep.equal([
      `broker mqtt://192.0.2.12:18862 is down since ${MINUTE_AGO} (connect ECONNREFUSED 192.0.2.12:18862)`,
      'sink fail2ban is failing with 3 change(s) waiting: fail2ban is gone',
      'bridge.firewalls[1]: 401 Unauthorized',
    ]);
  });

  it('prints every part, unknown ones as indented lines, and the verdict last', () => {
    const text = renderStatus(
      { version: '2.0.0', pid: 42, startedAt: MINUTE_AGO, status: status({ bridge: { wanted: { f2b_sshd: 3 }, firewalls: [{ url: 'https://192.0.2.1', reachable: true }] } }) },
      [],
      NOW,
    );
    expect(text).to.equal(
      [
        'syncfail2ban 2.0.0, pid 42, up 1m',
        'node id:   web1',
        'topology:  mesh (embedded broker on mqtt://192.0.2.10:18862)',
        'brokers:',
        '  mqtt://192.0.2.10:18862  connected for 1m',
        'peers seen (last event):',
        '  web2  1m ago',
        'events:    3 received, 2 accepted, 0 own skipped, 1 refused',
        'refused:   bad-address 1',
        'sinks:',
        '  fail2ban  applied 2 of 2, backlog 0, failures 0, dropped 0',
        'holdings:  1 in /var/lib/syncfail2ban, 0 unban(s) from origins holding nothing',
        '  sshd  web2 1',
        'bridge:',
        '  wanted:',
        '    f2b_sshd: 3',
        '  firewalls:',
        '    - url: https://192.0.2.1',
        '      reachable: true',
        'healthy',
        '',
      ].join('\n'),
    );
  });

  it('a clustered hub link shows where it is, its failovers and the other instances; being failed over is healthy', () => {
    const links = [{
      url: 'mqtt://10.0.0.6:1883', state: 'connected', since: MINUTE_AGO, lastError: null,
      instances: ['mqtt://10.0.0.5:1883', 'mqtt://10.0.0.6:1883'], preferred: 'mqtt://10.0.0.5:1883', failovers: 1,
    }];
    const failedOver = status({ topology: 'hub', embeddedBroker: null, links });
    expect(healthProblems(failedOver)).to.deep.equal([]);
    expect(renderStatus({ version: '2.0.0', pid: 42, startedAt: MINUTE_AGO, status: failedOver }, [], NOW)).to.include(
      [
        'brokers:',
        '  mqtt://10.0.0.6:1883  connected for 1m',
        '    clustered hub: failed over from mqtt://10.0.0.5:1883, returns when it answers; 1 failover(s); other instances: mqtt://10.0.0.5:1883',
      ].join('\n'),
    );
  });
});
