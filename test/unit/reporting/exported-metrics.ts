import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../../agent/agent.js';
import { Inbox } from '../../../agent/links/inbox.js';
import { ClusterBus } from '../../../broker/cluster.js';
import { StandaloneBroker } from '../../../broker/standalone.js';
import { loadConfig } from '../../../src/config.js';
import { AgentMetrics } from '../../../src/reporting/prometheus.js';
import type { Program } from '../../../src/reporting/reporter.js';
import type { AgentStatus } from '../../../src/status.js';
import { captureLog } from '../../support/capture-log.js';

/** A metric family as /metrics exports it: its name and the labels its samples carry. */
export interface Family {
  type: string;
  labels: Set<string>;
}

/**
 * Every metric family the agent and syncfail2ban-broker export, with each one's labels:
 * the agent built (not started) from a config that turns every part on (mesh with its
 * embedded broker, the fail2ban sync jails, the OPNsense bridge, kernel sets, metrics),
 * syncfail2ban-broker likewise with its Redis bus; each status rendered by the code that
 * serves /metrics (src/reporting/prometheus.ts), so a renamed measure or part changes this.
 */
export async function exportedFamilies(): Promise<Map<string, Family>> {
  const dir = await mkdtemp(join(tmpdir(), 'sf2b-metrics-names-'));
  const file = join(dir, 'config.cfg');
  await writeFile(
    file,
    [
      '[default]',
      'node_id = dashboard',
      'mq_ip = 127.0.0.1',
      'mq_port = 18862',
      `state_dir = ${join(dir, 'state')}`,
      `control_socket = ${join(dir, 'control.sock')}`,
      'metrics_port = 9464',
      'nft_sync = true',
      'opn_fw_sync = true',
      'opn_fw_ip = 192.0.2.1',
      'cluster_redis_url = redis://127.0.0.1:6379',
      `cluster_key = ${'ab'.repeat(32)}`,
      '[jails]',
      'sshd = sshd-sync',
      '[opn_aliases]',
      'sshd = f2b_sshd',
      '[opn_keys]',
      '192.0.2.1_key = key',
      '192.0.2.1_secret = secret',
      '[broker]',
      `control_socket = ${join(dir, 'broker.sock')}`,
      'metrics_port = 9465',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const config = loadConfig(file);
  const { log } = captureLog();
  const agent = new Agent(config, log, new Inbox(log));
  const broker = new StandaloneBroker(config, log);
  const bus = new ClusterBus({ redisUrl: 'redis://127.0.0.1:6379', key: 'ab'.repeat(32), log });
  const brokerStatus = broker.status();
  const families = new Map<string, Family>();
  const render = async (status: AgentStatus, program: Program) => {
    const metrics = new AgentMetrics(() => status, program);
    const text = await metrics.scrape();
    // The process metrics (prom-client's defaults) from the text; labels from their samples.
    for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) if (!families.has(name!)) families.set(name!, { type: type!, labels: new Set() });
    for (const [, name, labels] of text.matchAll(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? /gm)) {
      const family = families.get(name!) ?? families.get(name!.replace(/_(bucket|sum|count)$/, ''));
      for (const [, label] of (labels ?? '').matchAll(/(\w+)="/g)) family?.labels.add(label!);
    }
    // The program's own families with every label they may carry, samples or not.
    for (const metric of metrics.registry.getMetricsAsArray() as unknown as Array<{ name: string; labelNames: string[] }>) {
      for (const label of metric.labelNames) families.get(metric.name)?.labels.add(label);
    }
  };
  await render(agent.status(), 'syncfail2ban');
  await render({ ...brokerStatus, parts: [...brokerStatus.parts, bus.status()] }, 'syncfail2ban-broker');
  return families;
}
