import { RawMqtt, type RawTarget } from './raw-mqtt.js';

/** A snapshot part as `syncfail2ban-client -f` publishes it (src/snapshot.ts), for a simulated host. */
export function snapshotPart(origin: string, id: string, part: number, parts: number, ips: readonly string[]): string {
  return JSON.stringify({ origin, id, part, parts, ips });
}

/**
 * `count` simulated hosts running `-f <jail>` at once: each on its own connection from its own
 * address (127.x.y.1, as separate machines are) with client id and origin `sim-<i>`, publishes
 * a snapshot of two parts, `addressesOf(i)` split between them, at QoS 1. Every host's first
 * part goes out before any second part, as when a fleet runs -f together after an outage:
 * every snapshot is open on the receivers at the same moment. Resolves once the broker
 * acknowledged every part; throws when it refused a connection or a part.
 */
export async function simultaneousFullSyncs(broker: Pick<RawTarget, 'host' | 'port'>, count: number, jail: string, addressesOf: (i: number) => string[]): Promise<void> {
  const hosts: RawMqtt[] = [];
  try {
    for (let first = 0; first < count; first += 100) {
      hosts.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(100, count - first) }, async (_, j) => {
            const i = first + j;
            const host = await RawMqtt.open({ ...broker, localAddress: `127.${1 + (i >> 8)}.${i & 255}.1` });
            host.connect({ clientId: `sim-${i}` });
            const code = await host.connack();
            if (code !== 0) throw new Error(`the broker refused simulated host sim-${i} (CONNACK ${code})`);
            return host;
          }),
        )),
      );
    }
    const ids = hosts.map((_, i) => (0x5100000000000000n + BigInt(i)).toString(16));
    for (const part of [0, 1]) {
      await Promise.all(
        hosts.map(async (host, i) => {
          const addresses = addressesOf(i);
          const half = Math.ceil(addresses.length / 2);
          const ips = part === 0 ? addresses.slice(0, half) : addresses.slice(half);
          const messageId = part + 1;
          host.send({ cmd: 'publish', topic: `f2b/${jail}/snapshot`, payload: snapshotPart(`sim-${i}`, ids[i]!, part, 2, ips), qos: 1, messageId, retain: false, dup: false });
          await waitForPuback(host, messageId, `part ${part + 1} of sim-${i}`);
        }),
      );
    }
  } finally {
    await Promise.all(hosts.map((host) => host.close()));
  }
}

async function waitForPuback(host: RawMqtt, messageId: number, what: string): Promise<void> {
  const acked = () => host.received.some((packet) => packet.cmd === 'puback' && packet.messageId === messageId);
  while (!acked()) {
    const closed = await Promise.race([host.closed.then(() => true), new Promise<false>((resolve) => host.socket.once('data', () => resolve(false)))]);
    if (closed && !acked()) throw new Error(`the broker closed the connection before acknowledging ${what}`);
  }
}
