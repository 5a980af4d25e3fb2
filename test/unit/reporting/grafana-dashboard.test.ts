import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT } from '../../support/paths.js';
import { exportedFamilies, type Family } from './exported-metrics.js';

/** Labels Prometheus adds to every scraped sample. */
const TARGET_LABELS = new Set(['instance', 'job', '__name__']);

interface Panel {
  title?: string;
  type: string;
  targets?: Array<{ expr: string }>;
  panels?: Panel[];
}

/** Every PromQL expression of the dashboard: its panels' queries and its variables' queries. */
function expressions(dashboard: { panels: Panel[]; templating: { list: Array<{ definition?: string }> } }): Array<[where: string, expr: string]> {
  const fromPanels = (panels: Panel[]): Array<[string, string]> =>
    panels.flatMap((panel) => [...(panel.targets ?? []).map((target) => [`panel "${panel.title}"`, target.expr] as [string, string]), ...fromPanels(panel.panels ?? [])]);
  return [...fromPanels(dashboard.panels), ...dashboard.templating.list.flatMap((variable) => (variable.definition ? [[`variable query`, variable.definition] as [string, string]] : []))];
}

/** The metric names an expression selects, with the labels each selector or grouping names. */
function selections(expr: string, families: Map<string, Family>): Array<{ names: string[]; labels: string[] }> {
  const found: Array<{ names: string[]; labels: string[] }> = [];
  const grouped = [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((match) => match[1]!.split(',').map((label) => label.trim()).filter((label) => label && !TARGET_LABELS.has(label)));
  for (const match of expr.matchAll(/\{__name__=~"([^"]+)"([^}]*)\}/g)) {
    const pattern = new RegExp(`^(?:${match[1]})$`);
    found.push({ names: [...families.keys()].filter((name) => pattern.test(name)), labels: labelNames(match[2]!) });
  }
  for (const match of expr.matchAll(/\b((?:syncfail2ban|process|nodejs)_\w+)(\{[^}]*\})?/g)) found.push({ names: [match[1]!], labels: labelNames(match[2] ?? '') });
  // A grouping label must be carried by some metric the expression reads.
  if (grouped.length > 0) found.push({ names: [], labels: grouped });
  return found;
}

function labelNames(selector: string): string[] {
  return [...selector.matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)].map((match) => match[1]!).filter((label) => !TARGET_LABELS.has(label));
}

describe('the Grafana dashboard (etc/grafana/syncfail2ban.json)', function () {
  this.timeout(20_000);
  let dashboard: Parameters<typeof expressions>[0];
  let families: Map<string, Family>;

  before(async () => {
    dashboard = JSON.parse(await readFile(join(ROOT, 'etc/grafana/syncfail2ban.json'), 'utf8')) as typeof dashboard;
    families = await exportedFamilies();
  });

  it('queries only metrics the agent and syncfail2ban-broker export, by labels they carry', () => {
    const wrong: string[] = [];
    for (const [where, expr] of expressions(dashboard)) {
      const read = selections(expr, families);
      const names = read.flatMap((selection) => selection.names);
      for (const { names: selected, labels } of read) {
        if (selected.length === 0 && labels.length === 0) continue;
        for (const name of selected) if (!families.has(name)) wrong.push(`${where}: ${name} is not exported`);
        const pool = selected.length > 0 ? selected : names;
        for (const label of labels) {
          if (!pool.some((name) => families.get(name)?.labels.has(label))) wrong.push(`${where}: no metric of ${JSON.stringify(expr)} carries the label ${label}`);
        }
      }
      if (names.length === 0) wrong.push(`${where}: ${JSON.stringify(expr)} reads no metric of syncfail2ban`);
    }
    expect(wrong).to.deep.equal([]);
  });

  it('shows what an operator of a fleet watches: events in, per sink applied and dropped, refusals, links, the outbox, holdings, leases, broker clients, messages and drops', () => {
    const read = new Set(expressions(dashboard).flatMap(([, expr]) => selections(expr, families).flatMap((selection) => selection.names)));
    const watched = [
      'syncfail2ban_events_received_total',
      'syncfail2ban_sink_changes_applied_total',
      'syncfail2ban_sink_changes_dropped_total',
      'syncfail2ban_events_refused_total',
      'syncfail2ban_broker_refused_total',
      'syncfail2ban_link_connected',
      'syncfail2ban_publisher_backlog',
      'syncfail2ban_fleet_holdings',
      'syncfail2ban_fleet_leases',
      'syncfail2ban_broker_clients',
      'syncfail2ban_broker_messages_in_total',
      'syncfail2ban_broker_dropped_total',
    ];
    expect(watched.filter((name) => !read.has(name))).to.deep.equal([]);
  });

  it('the check itself catches a renamed metric and a wrong label', () => {
    const renamed = selections('sum by (sink) (rate(syncfail2ban_sink_applied_total[5m]))', families);
    expect(renamed[0]!.names.every((name) => families.has(name))).to.equal(false);
    const mislabelled = selections('sum by (reason) (syncfail2ban_broker_clients)', families);
    expect(mislabelled.some(({ names, labels }) => labels.includes('reason') && !(names.length ? names : ['syncfail2ban_broker_clients']).some((name) => families.get(name)?.labels.has('reason')))).to.equal(true);
  });
});
