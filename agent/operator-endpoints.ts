import type { Config } from '../src/config.js';
import type { Logger } from '../src/log.js';
import type { AgentStatus } from './agent.js';
import { ControlServer } from './control-server.js';

export interface OperatorEndpoints {
  close(): Promise<void>;
}

/**
 * What operators read the running agent through: the control socket (always, for
 * `syncfail2ban-client status`) and the Prometheus endpoint (when metrics_port is set).
 * Neither can stop the agent from syncing: a failure is logged with its fix.
 */
export async function startOperatorEndpoints(config: Config, status: () => AgentStatus, log: Logger): Promise<OperatorEndpoints> {
  const control = await ControlServer.start(config.controlSocket, status, log);
  let metrics: { close(): Promise<void> } | undefined;
  if (config.metrics) {
    try {
      const { MetricsServer } = await import('./metrics.js');
      metrics = await MetricsServer.start(config.metrics, status, log);
    } catch (error) {
      log.error({ metricsPort: config.metrics.port }, `no metrics: ${(error as Error).message}`);
    }
  }
  return {
    async close() {
      await Promise.all([control?.close(), metrics?.close()]);
    },
  };
}
