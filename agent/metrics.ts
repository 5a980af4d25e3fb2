import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { type MetricsEndpoint, urlHost } from '../src/config.js';
import type { Logger } from '../src/log.js';
import { healthProblems, type AgentStatus, type Measure, type PartStatus, type Problem } from '../src/status.js';
import { programVersion } from '../src/version.js';
import { presentsToken } from './metrics-auth.js';
import type { Part } from './part.js';

type Labels = Record<string, string>;
type Metric = Counter | Gauge;

/**
 * Renders Agent.status() at scrape time: the agent keeps no second set of counters. Every
 * part's measure becomes `syncfail2ban_<kind>_<measure>` (`_total` for counters,
 * `_timestamp_seconds` for times), labelled
 * with the part's name under its kind (`sink="fail2ban"`) and the measure's own label.
 */
class AgentMetrics {
  readonly registry = new Registry();
  private readonly families = new Map<string, Metric>();
  private readonly version = programVersion();

  constructor(private readonly status: () => AgentStatus) {
    collectDefaultMetrics({ register: this.registry });
  }

  /** The Prometheus text format; every metric of one scrape comes from the same status. */
  async scrape(): Promise<string> {
    const status = this.status();
    for (const family of this.families.values()) family.reset();
    this.set('syncfail2ban_up', { help: '1 while the agent runs, with what it is as labels', type: 'gauge', value: 1 }, { node_id: status.nodeId, topology: status.topology, version: this.version });
    this.set('syncfail2ban_healthy', { help: '1 when syncfail2ban-client status would exit 0', type: 'gauge', value: healthProblems(status).length === 0 ? 1 : 0 }, {});
    for (const part of status.parts) {
      const labels: Labels = part.name === undefined ? {} : { [part.kind]: part.name };
      this.set(`syncfail2ban_${part.kind}_problems`, { help: `problems of a ${part.kind} part (syncfail2ban-client status names them)`, type: 'gauge', value: part.problems.length }, labels);
      for (const [key, measure] of Object.entries(part.measures)) this.set(metricName(part, key, measure), measure, labels);
    }
    return this.registry.metrics();
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
  const suffix = measure.unit === 'timestamp' ? '_timestamp_seconds' : measure.type === 'counter' ? '_total' : '';
  return `syncfail2ban_${part.kind}_${key}${suffix}`;
}

/** Serves GET /metrics on metrics_host:metrics_port; a port it cannot bind is a problem in the status, not a reason to stop syncing. */
export class MetricsServer implements Part {
  private server: Server | undefined;
  private problem: Problem | null = null;
  private readonly url: string;

  constructor(
    private readonly endpoint: MetricsEndpoint,
    private readonly report: () => AgentStatus,
    private readonly log: Logger,
  ) {
    this.url = `http://${urlHost(endpoint.host)}:${endpoint.port}/metrics`;
  }

  async start(): Promise<void> {
    const { endpoint, log } = this;
    const metrics = new AgentMetrics(this.report);
    const server = createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      if (request.method !== 'GET' || path !== '/metrics') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('syncfail2ban: metrics are at GET /metrics\n');
        return;
      }
      if (endpoint.token !== undefined && !presentsToken(request.headers.authorization, endpoint.token)) {
        response.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="syncfail2ban", Basic realm="syncfail2ban"' });
        response.end('syncfail2ban: metrics need metrics_token (Authorization: Bearer <token>, or basic auth with it as the password)\n');
        return;
      }
      metrics.scrape().then(
        (body) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
        (error: Error) => {
          log.error({ err: error.message }, 'could not collect metrics');
          response.writeHead(500, { 'content-type': 'text/plain' }).end(`syncfail2ban: could not collect metrics: ${error.message}\n`);
        },
      );
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: endpoint.host, port: endpoint.port }, () => resolve());
      });
    } catch (error) {
      this.problem = {
        what: `cannot serve metrics on ${endpoint.host}:${endpoint.port} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        fix: 'choose a free metrics_port, or 0 to turn metrics off',
      };
      log.error({ metricsPort: endpoint.port }, `no metrics: ${this.problem.what}; fix: ${this.problem.fix}`);
      return;
    }
    this.server = server;
    log.info({ metrics: this.url }, 'serving Prometheus metrics');
  }

  async stop(): Promise<void> {
    const { server } = this;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  status(): PartStatus {
    return { kind: 'metrics', problems: this.problem ? [this.problem] : [], measures: {}, details: { url: this.url } };
  }
}
