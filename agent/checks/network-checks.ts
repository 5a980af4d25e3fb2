import { endpointUrl, peerUrls, type Config } from '../../src/config.js';
import { requestStatus } from '../../src/control-protocol.js';
import { listenProblem } from '../../broker/broker.js';
import { ConnectionRefused, publishAll } from '../../cli/mqtt-publish.js';
import type { Finding } from './finding.js';
import { onlyUnreachable } from './unreachable.js';

/**
 * Mesh: can the embedded broker listen on mq_ip:mq_port? In use is fine when this host's
 * running agent is the one listening there (a check while the service runs).
 */
export async function checkListen(config: Config): Promise<Finding[]> {
  if (config.brokerUrls.length) return [];
  const own = endpointUrl(config.mq, config.meshTls);
  const subject = `mq_ip:mq_port ${own}`;
  const problem = await listenProblem(config.mq.host, config.mq.port);
  if (!problem) return [{ level: 'ok', subject, message: 'is free for the embedded broker' }];
  const running = await requestStatus(config.controlSocket, config.connectionTimeoutS * 1000).catch(() => undefined);
  if (running?.status.parts.some((part) => part.kind === 'broker' && part.details.url === own)) return [{ level: 'ok', subject, message: `is this host's running agent (pid ${running.pid})` }];
  return [{ level: 'fail', subject, message: problem.what, ...(problem.fix === undefined ? {} : { fix: problem.fix }) }];
}

/**
 * Every broker this host would subscribe to (each peer in sync_servers, or broker_url):
 * reachable, and accepting this host's credentials. All at once, each within connection_timeout.
 * One that does not answer is a warning (the agent keeps trying); one that refuses fails.
 */
export async function checkBrokers(config: Config): Promise<Finding[]> {
  const credentials = config.mqtt;
  const targets = config.brokerUrls.length ? config.brokerUrls.map((url) => ({ key: 'broker_url', url })) : peerUrls(config).map((url) => ({ key: 'peer', url }));
  const account = credentials.username === undefined ? 'anonymously' : `as ${credentials.username}`;
  return Promise.all(
    targets.map(async ({ key, url }): Promise<Finding> => {
      const subject = `${key} ${url}`;
      try {
        // An MQTT connection with nothing to publish: CONNECT, CONNACK, DISCONNECT.
        await publishAll(url, [], { timeoutMs: config.connectionTimeoutS * 1000, ...credentials });
        return { level: 'ok', subject, message: `reachable; it accepts this host's connection (${account})` };
      } catch (error) {
        const refused = error instanceof ConnectionRefused;
        // A peer not started yet does not stop this host from working; credentials it refuses do.
        const unreachable = refused ? error.returnCode === 3 : onlyUnreachable(error);
        return {
          level: unreachable ? 'warn' : 'fail',
          subject,
          message: `${(error as Error).message}${refused ? ` (connecting ${account})` : ''}`,
          fix: refused
            ? "give this host's account on that broker: mqtt_username (default node_id) and mqtt_password_file, as listed in the broker's [users] or password file"
            : config.brokerUrls.length
              ? 'start the broker, correct broker_url, or open its port to this host'
              : 'start syncfail2ban on that server, correct the entry in sync_servers, or open mq_port between the servers',
        };
      }
    }),
  );
}
