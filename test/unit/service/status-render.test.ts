import { expect } from 'chai';
import { renderStatus } from '../../../src/reporting/status-text.js';
import { counted, counter, gauge, healthProblems, type AgentStatus, type PartStatus } from '../../../src/status.js';

const NOW = Date.parse('2025-03-02T12:00:00.000Z');
const MINUTE_AGO = '2025-03-02T11:59:00.000Z';

function link(url: string, state: string, problems: PartStatus['problems'] = []): PartStatus {
  return { kind: 'link', name: url, problems, measures: { connected: gauge('subscribed', state === 'connected' ? 1 : 0) }, details: { state, since: { time: MINUTE_AGO } } };
}

function status(parts: PartStatus[]): AgentStatus {
  return { nodeId: 'web1', topology: 'mesh', dryRun: false, parts };
}

const events: PartStatus = {
  kind: 'events',
  problems: [],
  measures: {
    received: counter('received', 3),
    refused: counted('refused', 'reason', { 'bad-address': 1 }),
    peer_last_event: { help: 'seen', type: 'gauge', unit: 'timestamp', label: 'origin', values: { web2: Date.parse(MINUTE_AGO) / 1000 } },
  },
  details: {},
};

describe('status: health and the text rendering come from the parts alone', () => {
  it('an agent whose parts have no problems is healthy', () => {
    expect(healthProblems(status([link('mqtt://192.0.2.10:18862', 'connected'), events]))).to.deep.equal([]);
  });

  it("every part's problems, named by the part, make it unhealthy", () => {
    const problems = healthProblems(
      status([
        link('mqtt://192.0.2.12:18862', 'down', [{ what: 'down since then', fix: 'start it' }]),
        events,
        { kind: 'metrics', problems: [{ what: 'port in use', fix: 'choose another' }], measures: {}, details: {} },
      ]),
    );
    expect(problems).to.deep.equal([
      { part: 'link mqtt://192.0.2.12:18862', what: 'down since then', fix: 'start it' },
      { part: 'metrics', what: 'port in use', fix: 'choose another' },
    ]);
  });

  it('prints every part the same way: details, single measures on one line, labelled ones each on a line, and the verdict last', () => {
    const broken = link('mqtt://192.0.2.12:18862', 'down', [{ what: 'down since then', fix: 'start it' }]);
    const memory: PartStatus = { kind: 'memory', problems: [], measures: { heap: { ...gauge('heap', 20.5 * 2 ** 20), unit: 'bytes' }, trims: counter('trims', 2) }, details: { trim: 'after bulk work' } };
    const fleet: PartStatus = { kind: 'fleet', problems: [], measures: { leases: gauge('leases', 3), lease_next_end: { ...gauge('next end', NOW / 1000 + 3_720), unit: 'timestamp' } }, details: {} };
    const report = { program: 'syncfail2ban' as const, version: '2.0.0', pid: 42, startedAt: MINUTE_AGO, status: status([broken, events, memory, fleet]) };
    expect(renderStatus(report, healthProblems(report.status), NOW)).to.equal(
      [
        'syncfail2ban 2.0.0, pid 42, up 1m',
        'node id:   web1',
        'topology:  mesh',
        'link mqtt://192.0.2.12:18862',
        '  state: down',
        `  since: ${MINUTE_AGO} (1m ago)`,
        '  connected 0',
        'events',
        '  received 3',
        '  refused: bad-address 1',
        '  peer last event: web2 1m ago',
        'memory',
        '  trim: after bulk work',
        '  heap 20.5 MB, trims 2',
        'fleet',
        '  leases 3, lease next end in 1h 2m',
        'UNHEALTHY:',
        '  - link mqtt://192.0.2.12:18862: down since then',
        '    fix: start it',
        '',
      ].join('\n'),
    );
  });
});
