import { createServer, type Server } from 'node:http';
import { type MetricsEndpoint, urlHost } from '../config.js';
import { LogThrottle } from '../log-throttle.js';
import type { Part } from '../part.js';
import { counter, type PartStatus, type Problem } from '../status.js';
import { presentsToken } from './metrics-auth.js';
import type { Reporter } from './reporter.js';

/**
 * What one connection may hold the port for. A connection that sends nothing is closed after
 * IDLE_MS without a byte; one that trickles its headers, once HEADERS_MS have passed (checked
 * every CHECK_MS); a whole request gets REQUEST_MS. A scrape takes milliseconds.
 */
const IDLE_MS = 5_000;
const HEADERS_MS = 5_000;
const REQUEST_MS = 10_000;
const CHECK_MS = 1_000;
/**
 * Connections open at once; Node closes any beyond at once. Prometheus keeps one per scraper,
 * so this leaves room for many; the cap keeps strangers from taking the file descriptors the
 * program's own work needs (the broker, the links, fail2ban's socket, the state files).
 */
export const MAX_METRICS_CONNECTIONS = 32;

/** Serves GET /metrics on metrics_host:metrics_port; a port it cannot bind is a problem in the status, not a reason to stop syncing. */
export class MetricsServer implements Part {
  private server: Server | undefined;
  private problem: Problem | null = null;
  private readonly url: string;
  private dropped = 0;
  private readonly dropLog = new LogThrottle();

  constructor(
    private readonly endpoint: MetricsEndpoint,
    private readonly reporter: Reporter,
  ) {
    this.url = `http://${urlHost(endpoint.host)}:${endpoint.port}/metrics`;
  }

  async start(): Promise<void> {
    const { endpoint, reporter } = this;
    const { log, program } = reporter;
    // prom-client is loaded only when metrics are on (they are off by default): it costs about 4 MB of RSS.
    const { AgentMetrics } = await import('./prometheus.js');
    const metrics = new AgentMetrics(() => reporter.status(), program);
    const server = createServer({ headersTimeout: HEADERS_MS, requestTimeout: REQUEST_MS, keepAliveTimeout: IDLE_MS, connectionsCheckingInterval: CHECK_MS }, (request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      if (request.method !== 'GET' || path !== '/metrics') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end(`${program}: metrics are at GET /metrics\n`);
        return;
      }
      if (endpoint.token !== undefined && !presentsToken(request.headers.authorization, endpoint.token)) {
        response.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="syncfail2ban", Basic realm="syncfail2ban"' });
        response.end(`${program}: metrics need ${reporter.key('metrics_token')} (Authorization: Bearer <token>, or basic auth with it as the password)\n`);
        return;
      }
      metrics.scrape().then(
        (body) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
        (error: Error) => {
          log.error({ err: error.message }, 'could not collect metrics');
          response.writeHead(500, { 'content-type': 'text/plain' }).end(`${program}: could not collect metrics: ${error.message}\n`);
        },
      );
    });
    server.setTimeout(IDLE_MS); // no 'timeout' listener: Node destroys the idle socket
    server.maxConnections = MAX_METRICS_CONNECTIONS;
    server.on('drop', (dropped) => this.noteDropped(dropped?.remoteAddress));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: endpoint.host, port: endpoint.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      this.problem = {
        what: `cannot serve metrics on ${endpoint.host}:${endpoint.port} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        fix: `choose a free ${reporter.key('metrics_port')}, or 0 to turn metrics off`,
      };
      log.error({ metricsPort: endpoint.port }, `no metrics: ${this.problem.what}; fix: ${this.problem.fix}`);
      return;
    }
    // After listening, an error (e.g. EMFILE while accepting) must not end the program.
    server.on('error', (error: Error) => log.warn({ err: error.message }, 'metrics endpoint: a connection failed'));
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
    return {
      kind: 'metrics',
      problems: this.problem ? [this.problem] : [],
      measures: { connections_dropped: counter(`connections to the metrics port closed at once because ${MAX_METRICS_CONNECTIONS} were open`, this.dropped) },
      details: { url: this.url },
    };
  }

  private noteDropped(remote: string | undefined): void {
    this.dropped += 1;
    const held = this.dropLog.pass('drop');
    if (held === null) return;
    this.reporter.log.warn({ remote, dropped: this.dropped }, `metrics endpoint: ${MAX_METRICS_CONNECTIONS} connections are open, so a new one was closed at once (${held} more since the last such line); is something holding connections open? Set ${this.reporter.key('metrics_host')} to a private address or firewall the port`);
  }
}
