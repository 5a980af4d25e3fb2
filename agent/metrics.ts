import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { type MetricsEndpoint, urlHost } from '../src/config.js';
import type { Logger } from '../src/log.js';
import { programVersion } from '../src/version.js';
import type { AgentStatus } from './agent.js';
import { healthProblems } from './health.js';
import { presentsToken } from './metrics-auth.js';

type Labels = Record<string, string>;
type Sample = [labels: Labels, value: number];

interface MetricSpec {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labelNames?: string[];
  read(status: AgentStatus): Sample[];
}

/** Every metric is read from Agent.status() at scrape time: the agent keeps no second set of counters. */
const METRICS: MetricSpec[] = [
  { name: 'syncfail2ban_up', help: '1 while the agent runs, with what it is as labels', type: 'gauge', labelNames: ['node_id', 'topology', 'version'], read: (s) => [[{ node_id: s.nodeId, topology: s.topology, version: programVersion() }, 1]] },
  { name: 'syncfail2ban_healthy', help: '1 when syncfail2ban-client status would exit 0', type: 'gauge', read: (s) => [[{}, healthProblems(s).length === 0 ? 1 : 0]] },
  { name: 'syncfail2ban_events_received_total', help: 'MQTT messages received on f2b/+/+', type: 'counter', read: (s) => [[{}, s.intake.received]] },
  { name: 'syncfail2ban_events_accepted_total', help: 'valid events handed to at least one sink', type: 'counter', read: (s) => [[{}, s.intake.accepted]] },
  { name: 'syncfail2ban_events_own_skipped_total', help: "this host's own events, not applied again", type: 'counter', read: (s) => [[{}, s.intake.ownSkipped]] },
  { name: 'syncfail2ban_events_refused_total', help: 'messages refused before any sink, by reason', type: 'counter', labelNames: ['reason'], read: (s) => Object.entries(s.refused).map(([reason, count]) => [{ reason }, count]) },
  { name: 'syncfail2ban_broker_connected', help: '1 when the subscription link to this broker is connected', type: 'gauge', labelNames: ['broker'], read: (s) => s.links.map((link) => [{ broker: link.url }, link.state === 'connected' ? 1 : 0]) },
  { name: 'syncfail2ban_peer_last_event_timestamp_seconds', help: 'when a valid event from this origin last arrived', type: 'gauge', labelNames: ['origin'], read: (s) => Object.entries(s.intake.peersSeen).map(([origin, at]) => [{ origin }, Date.parse(at) / 1000]) },
  { name: 'syncfail2ban_sink_changes_submitted_total', help: 'changes queued for a sink', type: 'counter', labelNames: ['sink'], read: (s) => perSink(s, (sink) => sink.submitted) },
  { name: 'syncfail2ban_sink_changes_applied_total', help: 'changes a sink applied to its target', type: 'counter', labelNames: ['sink'], read: (s) => perSink(s, (sink) => sink.applied) },
  { name: 'syncfail2ban_sink_changes_dropped_total', help: 'changes a sink dropped (queue full, or shutting down)', type: 'counter', labelNames: ['sink'], read: (s) => perSink(s, (sink) => sink.dropped) },
  { name: 'syncfail2ban_sink_failures_total', help: 'failed attempts to apply a batch (each is retried)', type: 'counter', labelNames: ['sink'], read: (s) => perSink(s, (sink) => sink.failures) },
  { name: 'syncfail2ban_sink_backlog', help: 'changes waiting for a sink', type: 'gauge', labelNames: ['sink'], read: (s) => perSink(s, (sink) => sink.backlog) },
  { name: 'syncfail2ban_sink_failing', help: "1 while a sink's last attempt failed", type: 'gauge', labelNames: ['sink'], read: (s) => perSink(s, (sink) => (sink.lastError ? 1 : 0)) },
  { name: 'syncfail2ban_holdings', help: 'bans held, per primary jail and origin (the fleet state)', type: 'gauge', labelNames: ['jail', 'origin'], read: (s) => Object.entries(s.fleet.holdings).flatMap(([jail, origins]) => Object.entries(origins).map(([origin, count]): Sample => [{ jail, origin }, count])) },
  { name: 'syncfail2ban_unbans_without_holding_total', help: 'unbans from an origin that held no ban of the address: nothing changed', type: 'counter', read: (s) => [[{}, s.fleet.unbansWithoutHolding]] },
  { name: 'syncfail2ban_snapshot_complete', help: '1 when the last snapshot from this origin for this jail arrived complete, 0 when it only added', type: 'gauge', labelNames: ['jail', 'origin'], read: (s) => s.fleet.snapshots.map((snap) => [{ jail: snap.jail, origin: snap.origin }, snap.complete ? 1 : 0]) },
  { name: 'syncfail2ban_snapshot_timestamp_seconds', help: 'when the last snapshot from this origin for this jail ended', type: 'gauge', labelNames: ['jail', 'origin'], read: (s) => s.fleet.snapshots.map((snap) => [{ jail: snap.jail, origin: snap.origin }, Date.parse(snap.at) / 1000]) },
  { name: 'syncfail2ban_sync_jail_reconcile_ok', help: '1 when the last reconciliation of the sync jails succeeded', type: 'gauge', read: (s) => (s.syncJails ? [[{}, s.syncJails.ok ? 1 : 0]] : []) },
  { name: 'syncfail2ban_sync_jail_reconcile_added', help: 'missing bans the last reconciliation queued, per sync jail', type: 'gauge', labelNames: ['jail'], read: (s) => Object.entries(s.syncJails?.added ?? {}).map(([jail, count]) => [{ jail }, count]) },
  { name: 'syncfail2ban_sync_jail_reconcile_removed', help: 'released bans the last reconciliation queued for removal, per sync jail', type: 'gauge', labelNames: ['jail'], read: (s) => Object.entries(s.syncJails?.removed ?? {}).map(([jail, count]) => [{ jail }, count]) },
  { name: 'syncfail2ban_opnsense_changes_applied_total', help: 'alias changes the OPNsense bridge applied to a firewall', type: 'counter', labelNames: ['firewall'], read: (s) => perFirewall(s, (fw) => fw.applied) },
  { name: 'syncfail2ban_opnsense_changes_dropped_total', help: 'alias changes the OPNsense bridge dropped for a firewall', type: 'counter', labelNames: ['firewall'], read: (s) => perFirewall(s, (fw) => fw.dropped) },
  { name: 'syncfail2ban_opnsense_backlog', help: 'alias changes waiting for a firewall', type: 'gauge', labelNames: ['firewall'], read: (s) => perFirewall(s, (fw) => fw.backlog) },
  { name: 'syncfail2ban_opnsense_failing', help: "1 while the bridge's last request to a firewall failed", type: 'gauge', labelNames: ['firewall'], read: (s) => perFirewall(s, (fw) => (fw.lastError ? 1 : 0)) },
  { name: 'syncfail2ban_opnsense_alias_failing', help: '1 while an alias on a firewall is refused or failing (its lastError in status)', type: 'gauge', labelNames: ['firewall', 'alias'], read: (s) => perAlias(s, (alias) => (alias.lastError ? 1 : 0)) },
  { name: 'syncfail2ban_opnsense_alias_not_accepted', help: 'addresses answered done but absent from pf at the last reconciliation (table-entries limit)', type: 'gauge', labelNames: ['firewall', 'alias'], read: (s) => perAlias(s, (alias) => alias.notAccepted) },
];

type FirewallStats = NonNullable<AgentStatus['bridge']>['firewalls'][number];

function perFirewall(status: AgentStatus, value: (firewall: FirewallStats) => number): Sample[] {
  return (status.bridge?.firewalls ?? []).map((firewall) => [{ firewall: firewall.url }, value(firewall)]);
}

function perAlias(status: AgentStatus, value: (alias: FirewallStats['aliases'][string]) => number): Sample[] {
  return (status.bridge?.firewalls ?? []).flatMap((firewall) => Object.entries(firewall.aliases).map(([alias, stats]): Sample => [{ firewall: firewall.url, alias }, value(stats)]));
}

function perSink(status: AgentStatus, value: (sink: AgentStatus['sinks'][string]) => number): Sample[] {
  return Object.entries(status.sinks).map(([sink, stats]) => [{ sink }, value(stats)]);
}

/** The metrics above plus Node's process metrics; `scrape()` renders them from one status snapshot. */
export class AgentMetrics {
  readonly registry = new Registry();
  private snapshot: AgentStatus | undefined;

  constructor(private readonly status: () => AgentStatus) {
    collectDefaultMetrics({ register: this.registry });
    const current = (): AgentStatus => this.snapshot ?? this.status();
    for (const spec of METRICS) {
      const common = { name: spec.name, help: spec.help, labelNames: spec.labelNames ?? [], registers: [this.registry] };
      if (spec.type === 'counter') {
        new Counter({
          ...common,
          collect() {
            this.reset();
            for (const [labels, value] of spec.read(current())) this.inc(labels, value);
          },
        });
      } else {
        new Gauge({
          ...common,
          collect() {
            this.reset();
            for (const [labels, value] of spec.read(current())) this.set(labels, value);
          },
        });
      }
    }
  }

  /** The Prometheus text format; every metric of one scrape comes from the same status. */
  async scrape(): Promise<string> {
    this.snapshot = this.status();
    try {
      return await this.registry.metrics();
    } finally {
      this.snapshot = undefined;
    }
  }
}

/** Serves GET /metrics on the endpoint (metrics_host:metrics_port). */
export class MetricsServer {
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(endpoint: MetricsEndpoint, status: () => AgentStatus, log: Logger): Promise<MetricsServer> {
    const metrics = new AgentMetrics(status);
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
    const url = `http://${urlHost(endpoint.host)}:${endpoint.port}/metrics`;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(new Error(`cannot serve metrics on ${endpoint.host}:${endpoint.port} (${error.code ?? error.message}); fix: choose a free metrics_port, or 0 to turn metrics off`)),
      );
      server.listen({ host: endpoint.host, port: endpoint.port }, () => resolve());
    });
    log.info({ metrics: url }, 'serving Prometheus metrics');
    return new MetricsServer(server, url);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
