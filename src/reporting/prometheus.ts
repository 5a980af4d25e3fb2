import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { healthProblems, type AgentStatus, type Measure, type PartStatus } from '../status.js';
import { programVersion } from '../version.js';
import { statusCommand, type Program } from './reporter.js';

type Labels = Record<string, string>;
type Metric = Counter | Gauge;

/**
 * Process metrics (CPU, memory, event loop lag, GC), collected once per process: their
 * collectors (a GC observer, an event loop monitor) never stop, so a collection per agent
 * would pile them up at every reload.
 */
const processMetrics = new Registry();
collectDefaultMetrics({ register: processMetrics });

/**
 * Renders the status (the agent's, or syncfail2ban-broker's) at scrape time: neither keeps a
 * second set of counters. Every
 * part's measure becomes `syncfail2ban_<kind>_<measure>` (`_total` for counters,
 * `_timestamp_seconds` for times), labelled
 * with the part's name under its kind (`sink="fail2ban"`) and the measure's own label.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly families = new Map<string, Metric>();
  private readonly version = programVersion();

  constructor(
    private readonly status: () => AgentStatus,
    private readonly program: Program,
  ) {}

  /** The Prometheus text format; every metric of one scrape comes from the same status. */
  async scrape(): Promise<string> {
    const status = this.status();
    for (const family of this.families.values()) family.reset();
    const { program } = this;
    this.set('syncfail2ban_up', { help: '1 while the program runs, with what it is as labels', type: 'gauge', value: 1 }, { program, node_id: status.nodeId, topology: status.topology, version: this.version });
    this.set('syncfail2ban_healthy', { help: `1 when ${statusCommand(program)} would exit 0`, type: 'gauge', value: healthProblems(status).length === 0 ? 1 : 0 }, {});
    for (const part of status.parts) {
      const labels: Labels = part.name === undefined ? {} : { [part.kind]: part.name };
      this.set(`syncfail2ban_${part.kind}_problems`, { help: `problems of a ${part.kind} part (${statusCommand(program)} names them)`, type: 'gauge', value: part.problems.length }, labels);
      for (const [key, measure] of Object.entries(part.measures)) this.set(metricName(part, key, measure), measure, labels);
    }
    return Registry.merge([processMetrics, this.registry]).metrics();
  }

  private set(name: string, measure: Measure, labels: Labels): void {
    const samples: Array<[Labels, number]> = 'values' in measure ? Object.entries(measure.values).map(([value, count]) => [{ ...labels, [measure.label]: value }, count]) : [[labels, measure.value]];
    const family = this.family(name, measure, [...Object.keys(labels), ...('label' in measure ? [measure.label] : [])]);
    for (const [sampleLabels, value] of samples) {
      if (family instanceof Counter) family.inc(sampleLabels, value);
      else family.set(sampleLabels, value);
    }
  }

  private family(name: string, measure: Measure, labelNames: string[]): Metric {
    let family = this.families.get(name);
    if (!family) {
      const options = { name, help: measure.help, labelNames, registers: [this.registry] };
      family = measure.type === 'counter' ? new Counter(options) : new Gauge(options);
      this.families.set(name, family);
    }
    return family;
  }
}

function metricName(part: PartStatus, key: string, measure: Measure): string {
  const suffix = measure.unit === 'timestamp' ? '_timestamp_seconds' : measure.unit === 'bytes' ? '_bytes' : measure.type === 'counter' ? '_total' : '';
  return `syncfail2ban_${part.kind}_${key}${suffix}`;
}
