import { endpointUrl, type Config } from '../src/config.js';
import { clusterOf } from '../src/config-hub.js';
import type { Logger } from '../src/log.js';
import { allParts, type Part } from '../src/part.js';
import { ControlServer } from '../src/reporting/control-server.js';
import { MetricsServer } from '../src/reporting/metrics.js';
import type { Reporter } from '../src/reporting/reporter.js';
import type { AgentStatus } from '../src/status.js';
import { BrokerPart } from './broker-part.js';

/**
 * syncfail2ban-broker: the broker (with its Redis bus when clustered), the control socket
 * that answers `syncfail2ban-broker status`, and /metrics when [broker] metrics_port is set;
 * parts of the same kind as the agent's (src/part.ts), started in order and stopped in
 * reverse, whose status is reported the same way.
 */
export class StandaloneBroker {
  private readonly parts: Part[];
  private readonly started: Part[] = [];

  constructor(
    private readonly config: Config,
    log: Logger,
  ) {
    const { mq, broker: security, rateLimit, brokerReporting } = config;
    const cluster = config.cluster ? clusterOf(config.file, config.cluster) : undefined;
    const reporter: Reporter = { program: 'syncfail2ban-broker', key: (name) => `[broker] ${name}`, status: () => this.status(), log };
    this.parts = [
      new BrokerPart({ program: 'syncfail2ban-broker', host: mq.host, port: mq.port, url: endpointUrl(mq, Boolean(security.tls)), log, security, rateLimit, ...(cluster ? { cluster } : {}) }),
      new ControlServer(brokerReporting.controlSocket, reporter),
      ...(brokerReporting.metrics ? [new MetricsServer(brokerReporting.metrics, reporter)] : []),
    ];
  }

  /** Starts every part in order; when one cannot start (the broker's port in use), stops those started and throws. */
  async start(): Promise<void> {
    for (const part of this.parts) {
      try {
        await part.start();
      } catch (error) {
        await this.stop();
        throw error;
      }
      this.started.push(part);
    }
  }

  async stop(deadlineMs = 10_000): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    for (const part of this.started.splice(0).reverse()) await part.stop(Math.max(0, deadline - Date.now()));
  }

  status(): AgentStatus {
    return { nodeId: this.config.nodeId, topology: 'hub', dryRun: false, parts: allParts(this.parts).map((part) => part.status()) };
  }
}
