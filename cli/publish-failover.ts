import { publishAll, type Message, type PublishOptions } from './mqtt-publish.js';

/**
 * Publishes every message to the first broker that takes them all: the instances of a
 * clustered hub in this host's order. Fails only when none did, all within one deadline;
 * an instance that does not answer gets its share of the deadline, not all of it.
 */
export async function publishToFirst(urls: readonly string[], messages: Message[], options: PublishOptions): Promise<void> {
  if (urls.length === 1) return publishAll(urls[0]!, messages, options);
  const deadline = Date.now() + options.timeoutMs;
  const failures: string[] = [];
  for (const [index, url] of urls.entries()) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      failures.push(`${url} not tried: the deadline of ${options.timeoutMs} ms had passed`);
      continue;
    }
    try {
      return await publishAll(url, messages, { ...options, timeoutMs: remaining, connectTimeoutMs: remaining / (urls.length - index) });
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  throw new Error(`no hub instance took the message(s): ${failures.join('; ')}`);
}
