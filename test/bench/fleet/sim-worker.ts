/**
 * A child process of the fleet bench holding hundreds of simulated hosts: each one MQTT
 * connection from its own loopback address, subscribed to f2b/+/+ at QoS 1 as an agent is,
 * publishing at QoS 1 as the action does, and failing over to the next broker instance when
 * its own goes away (resending what was not acknowledged, as the agent's outbox does). It
 * speaks MQTT with the project's own codec and only finds, in each message, the ban's address
 * or the snapshot's origin: the machine's time goes to the brokers, not to this.
 */
import { connect as connectTcp, type Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DISCONNECT, decodePublish, encodeConnect, encodePuback, encodePublish, encodeSubscribe, nextFrame } from '../../../cli/mqtt-codec.js';
import { now, type Collected, type FromWorker, type SimHostSpec, type ToWorker } from './protocol.js';

const SUBSCRIPTION = 'f2b/+/+';
/** Connections opened at once while the fleet comes up. */
const CONNECTING_AT_ONCE = 50;
const RETRY_MS = 100;
/** MQTT keepalive: the broker closes a connection silent for 1.5 times it, so each host pings at half of it (as MQTT.js does). */
const KEEPALIVE_S = 60;
const PINGREQ = Buffer.from([0xc0, 0x00]);
const IP_FIELD = Buffer.from('"ip":"11.');
const ORIGIN_FIELD = '{"origin":"';

interface Outgoing {
  packetFor(messageId: number): Buffer;
  /** `port`: the broker instance that acknowledged it. */
  acked(at: number, port: number): void;
}

class SimHost {
  socket: Socket | undefined;
  subscribed = false;
  private nextId = 1;
  private instance = 0;
  private buffered: Buffer | undefined;
  private readonly unacked = new Map<number, Outgoing>();
  private readonly waiting: Outgoing[] = [];
  private stopping = false;
  /** Since its connection closed, while it was subscribed: when, connections tried, when the last one's TCP and CONNACK came. */
  private down = 0;
  private attempts = 0;
  private connectedAt = 0;
  private connackAt = 0;

  constructor(
    readonly spec: SimHostSpec,
    readonly slot: number,
    private readonly worker: Worker,
  ) {}

  /** Connects to its current instance and subscribes; on failure, tries the next one. */
  open(onSubscribed?: (error?: string) => void): void {
    const port = this.spec.ports[this.instance % this.spec.ports.length]!;
    const socket = connectTcp({ host: '127.0.0.1', port, localAddress: this.spec.localAddress });
    this.socket = socket;
    this.attempts += 1;
    socket.setNoDelay(true);
    socket.on('connect', () => {
      this.connectedAt = now();
      socket.write(encodeConnect({ clientId: this.clientId, keepaliveS: KEEPALIVE_S }));
    });
    socket.on('data', (chunk: Buffer) => this.read(chunk, onSubscribed));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.socket !== socket) return;
      const wasUp = this.subscribed;
      this.subscribed = false;
      this.socket = undefined;
      this.buffered = undefined;
      if (this.stopping) return;
      if (wasUp) {
        this.down = now();
        this.attempts = 0;
      }
      this.instance += 1;
      // What was written and not acknowledged goes again, first, on the next connection.
      this.waiting.unshift(...this.unacked.values());
      this.unacked.clear();
      setTimeout(() => this.open(onSubscribed), wasUp ? 0 : RETRY_MS);
    });
  }

  get clientId(): string {
    return `sim-${String(this.spec.index).padStart(4, '0')}`;
  }

  send(outgoing: Outgoing): void {
    if (!this.subscribed || !this.socket) {
      this.waiting.push(outgoing);
      return;
    }
    const id = this.nextId;
    this.nextId = (this.nextId % 65_535) + 1;
    this.unacked.set(id, outgoing);
    this.socket.write(outgoing.packetFor(id));
  }

  /** A PINGREQ on a connection that is up (the worker calls it every half keepalive). */
  ping(): void {
    if (this.subscribed) this.socket?.write(PINGREQ);
  }

  close(): void {
    this.stopping = true;
    this.socket?.end(DISCONNECT);
  }

  private read(chunk: Buffer, onSubscribed?: (error?: string) => void): void {
    const data = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk;
    let offset = 0;
    let acks: Buffer[] | undefined;
    for (let frame = nextFrame(data, 0); frame; frame = nextFrame(data, offset)) {
      const { header, start, end } = frame;
      offset = end;
      const type = header >> 4;
      if (type === 3) {
        const { topic, messageId, payload } = decodePublish(header, data.subarray(start, end));
        this.worker.received(this.slot, topic, payload);
        if (messageId) (acks ??= []).push(encodePuback(messageId));
      } else if (type === 4) {
        const id = (data[start]! << 8) | data[start + 1]!;
        this.unacked.get(id)?.acked(now(), this.spec.ports[this.instance % this.spec.ports.length]!);
        this.unacked.delete(id);
      } else if (type === 2) {
        this.connackAt = now();
        if (data[start + 1] !== 0) {
          onSubscribed?.(`${this.clientId}: CONNACK ${data[start + 1]}`);
          return;
        }
        this.socket!.write(encodeSubscribe(1, SUBSCRIPTION, 1));
      } else if (type === 9) {
        if (data[start + 2] === 0x80) {
          onSubscribed?.(`${this.clientId}: subscription refused`);
          return;
        }
        this.subscribed = true;
        if (this.down) {
          this.worker.failovers.push({ host: this.spec.index, down: this.down, connected: this.connectedAt, connack: this.connackAt, up: now(), attempts: this.attempts });
          this.down = 0;
        }
        onSubscribed?.();
        for (const outgoing of this.waiting.splice(0)) this.send(outgoing);
      }
    }
    this.buffered = offset < data.length ? data.subarray(offset) : undefined;
    // One write for the acknowledgements of everything this chunk brought.
    if (acks) this.socket?.write(acks.length === 1 ? acks[0]! : Buffer.concat(acks));
  }
}

class Worker {
  hosts: SimHost[] = [];
  private bySpec = new Map<number, SimHost>();
  arrivals = new Map<number, Float64Array>();
  sends = new Map<number, [number, number, number]>();
  snapshots = new Map<string, { parts: Uint16Array; done: Float64Array }>();
  snapshotAcks = new Map<string, number>();
  failovers: Collected['failovers'] = [];
  delivered = 0;
  snapshotsDone = 0;
  private pinging: NodeJS.Timeout | undefined;
  /** This process's own event-loop delay since the last collect: a starved simulator stamps arrivals late. */
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 10 });

  start(specs: SimHostSpec[]): void {
    this.loopDelay.enable();
    this.hosts = specs.map((spec, slot) => new SimHost(spec, slot, this));
    this.bySpec = new Map(this.hosts.map((host) => [host.spec.index, host]));
    this.pinging = setInterval(() => {
      for (const host of this.hosts) host.ping();
    }, (KEEPALIVE_S * 1000) / 2);
    const failed: string[] = [];
    let next = 0;
    let done = 0;
    const openNext = () => {
      const host = this.hosts[next++];
      if (!host) return;
      let answered = false;
      host.open((error) => {
        if (answered) return;
        answered = true;
        if (error) failed.push(error);
        done += 1;
        if (done === this.hosts.length) reply({ type: 'ready', subscribed: this.hosts.filter((h) => h.subscribed).length, failed });
        else openNext();
      });
    };
    for (let i = 0; i < CONNECTING_AT_ONCE; i++) openNext();
  }

  received(slot: number, topic: string, payload: Buffer): void {
    this.delivered += 1;
    const at = now();
    if (topic.endsWith('/snapshot')) return this.receivedPart(slot, payload, at);
    const field = payload.indexOf(IP_FIELD);
    if (field < 0) return;
    let key = 0;
    let octet = 0;
    for (let i = field + IP_FIELD.length; i < payload.length; i++) {
      const byte = payload[i]!;
      if (byte === 0x2e) {
        key = (key << 8) | octet;
        octet = 0;
      } else if (byte >= 0x30 && byte <= 0x39) octet = octet * 10 + byte - 0x30;
      else break;
    }
    key = (key << 8) | octet;
    let times = this.arrivals.get(key);
    if (!times) this.arrivals.set(key, (times = new Float64Array(this.hosts.length)));
    if (times[slot] === 0) times[slot] = at;
  }

  ban(host: number, key: number, topic: string, payload: string): void {
    const record: [number, number, number] = [0, 0, 0];
    this.sends.set(key, record);
    this.bySpec.get(host)!.send({
      packetFor: (id) => {
        if (record[0] === 0) record[0] = now();
        return encodePublish(topic, payload, id);
      },
      acked: (at, port) => {
        if (record[1] !== 0) return;
        record[1] = at;
        record[2] = port;
      },
    });
  }

  snapshot(host: number, topic: string, parts: string[]): void {
    const origin = this.bySpec.get(host)!.clientId;
    let left = parts.length;
    for (const part of parts) {
      this.bySpec.get(host)!.send({
        packetFor: (id) => encodePublish(topic, part, id),
        acked: (at) => {
          if (--left === 0) this.snapshotAcks.set(origin, at);
        },
      });
    }
  }

  collect(): Collected {
    const data: Collected = {
      arrivals: this.arrivals,
      sends: this.sends,
      snapshots: new Map([...this.snapshots].map(([origin, { done }]) => [origin, done])),
      snapshotAcks: this.snapshotAcks,
      failovers: this.failovers,
      hosts: this.hosts.map((host) => host.spec.index),
      loopDelayMs: { p99: this.loopDelay.percentile(99) / 1e6, max: this.loopDelay.max / 1e6 },
    };
    this.loopDelay.reset();
    this.arrivals = new Map();
    this.sends = new Map();
    this.snapshots = new Map();
    this.snapshotAcks = new Map();
    this.failovers = [];
    this.delivered = 0;
    this.snapshotsDone = 0;
    return data;
  }

  stop(): void {
    clearInterval(this.pinging);
    for (const host of this.hosts) host.close();
  }

  /** A snapshot part: `{"origin":"...","id":"...","part":N,"parts":M,...}`, read from its first bytes only. */
  private receivedPart(slot: number, payload: Buffer, at: number): void {
    const head = payload.toString('latin1', 0, 160);
    if (!head.startsWith(ORIGIN_FIELD)) return;
    const origin = head.slice(ORIGIN_FIELD.length, head.indexOf('"', ORIGIN_FIELD.length));
    const parts = Number(/"parts":(\d+)/.exec(head)?.[1] ?? 1);
    let entry = this.snapshots.get(origin);
    if (!entry) this.snapshots.set(origin, (entry = { parts: new Uint16Array(this.hosts.length), done: new Float64Array(this.hosts.length) }));
    entry.parts[slot] += 1;
    if (entry.parts[slot] === parts) {
      entry.done[slot] = at;
      this.snapshotsDone += 1;
    }
  }
}

function reply(message: FromWorker): void {
  process.send!(message);
}

const worker = new Worker();
process.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'start':
      return worker.start(message.hosts);
    case 'ban':
      return worker.ban(message.host, message.key, message.topic, message.payload);
    case 'snapshot':
      return worker.snapshot(message.host, message.topic, message.parts);
    case 'count':
      return reply({ type: 'count', delivered: worker.delivered, subscribed: worker.hosts.filter((host) => host.subscribed).length, snapshotsDone: worker.snapshotsDone });
    case 'collect':
      return reply({ type: 'collected', data: worker.collect() });
    case 'stop':
      worker.stop();
      reply({ type: 'stopped' });
      return;
  }
});
process.on('disconnect', () => process.exit(0));
