import { createServer, type Server } from 'node:http';
import { type MetricsEndpoint, urlHost } from '../config.js';
import type { Logger } from '../log.js';
import type { AgentStatus, PartStatus, Problem } from '../status.js';
import { presentsToken } from './metrics-auth.js';
import type { Part } from '../part.js';

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
    // prom-client is loaded only when metrics are on (they are off by default): it costs about 4 MB of RSS.
    const { AgentMetrics } = await import('./prometheus.js');
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
