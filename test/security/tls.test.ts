import { expect } from 'chai';
import { readFile, rm } from 'node:fs/promises';
import { connect } from 'mqtt';
import { makeTestCa, type TestCa } from '../support/certs.js';
import { connectedClient } from '../support/mqtt-client.js';
import { freePortOn } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';
import { waitFor } from '../support/wait.js';

describe('TLS: mesh brokers over mqtts with client certificates (mutual TLS)', function () {
  this.timeout(120_000);
  let ca: TestCa;
  let otherCa: TestCa;
  let a: SimHost;
  let b: SimHost;
  let port: number;
  const certs: Record<string, { certFile: string; keyFile: string }> = {};

  const tlsLines = (name: string) => [
    `mq_tls_cert = ${certs[name]!.certFile}`,
    `mq_tls_key = ${certs[name]!.keyFile}`,
    `mq_tls_client_ca = ${ca.caFile}`,
    `mqtt_ca_file = ${ca.caFile}`,
    `mqtt_cert_file = ${certs[name]!.certFile}`,
    `mqtt_key_file = ${certs[name]!.keyFile}`,
  ];

  before(async () => {
    [ca, otherCa] = await Promise.all([makeTestCa('sync-ca'), makeTestCa('unrelated-ca')]);
    // One certificate per host: server certificate of its broker and client certificate (CN = identity).
    certs['host-a'] = await ca.issue('host-a', { cn: 'host-a', ips: ['127.0.0.2'] });
    certs['host-b'] = await ca.issue('host-b', { cn: 'host-b', ips: ['127.0.0.3'] });
    port = await freePortOn(['127.0.0.2', '127.0.0.3']);
    [a, b] = await Promise.all(
      ['host-a', 'host-b'].map((name, index) =>
        SimHost.start({ name, ip: `127.0.0.${index + 2}`, port, peers: [`127.0.0.${3 - index}`], extra: tlsLines(name) }),
      ),
    );
    await Promise.all([a.startAgent(), b.startAgent()]);
    await Promise.all([a.waitSubscribed(2), b.waitSubscribed(2)]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await Promise.all([ca, otherCa].map((each) => each && rm(each.dir, { recursive: true, force: true })));
  });

  it('bans flow between hosts over mqtts', async () => {
    expect(a.requireAgent().logLines().map((line) => line.broker)).to.include(`mqtts://127.0.0.3:${port}`);
    await a.fail2ban.ban('sshd', '203.0.113.50');
    await waitFor(async () => (await b.banned('sshd-sync')).includes('203.0.113.50'), 'the ban over TLS on host-b');
  });

  it('the client is refused without a client certificate, and refuses a broker it cannot verify', async () => {
    // later keys win: blank out the client certificate
    await b.writeConfig(['mqtt_cert_file =', 'mqtt_key_file =']);
    try {
      const noCert = await b.client(['-a', 'sshd', 'banip', '203.0.113.51']);
      expect(noCert.code).to.equal(1);
      expect(noCert.stderr).to.match(/cannot publish to the broker at mqtts:\/\/127\.0\.0\.3|closed the connection/);

      await b.writeConfig([`mqtt_ca_file = ${otherCa.caFile}`]);
      const wrongCa = await b.client(['-a', 'sshd', 'banip', '203.0.113.52']);
      expect(wrongCa.code).to.equal(1);
      expect(wrongCa.stderr).to.match(/cannot publish to the broker at mqtts:\/\/127\.0\.0\.3:\d+: .*(certificate|self.signed)/i);

      await b.writeConfig([`mqtt_ca_file = ${otherCa.caFile}`, 'mqtt_tls_verify = false']);
      const unverified = await b.client(['-a', 'sshd', 'banip', '203.0.113.53']);
      expect(unverified.code, `verification off is an explicit choice: ${unverified.stderr}`).to.equal(0);
    } finally {
      await b.writeConfig();
    }
    await waitFor(async () => (await a.banned('sshd-sync')).includes('203.0.113.53'), 'the ban sent without verification');
    for (const host of [a, b]) {
      expect(await host.banned('sshd-sync')).not.to.include.members(['203.0.113.51', '203.0.113.52']);
    }
  });

  it("the certificate's CN is the identity: a host cannot publish as another", async () => {
    const spoofer = await connectedClient(`mqtts://127.0.0.2:${port}`, {
      ca: await readFile(ca.caFile),
      cert: await readFile(certs['host-b']!.certFile),
      key: await readFile(certs['host-b']!.keyFile),
    });
    const closed = new Promise<void>((resolve) => spoofer.once('close', () => resolve()));
    spoofer.publish('f2b/sshd/ban', JSON.stringify({ ip: '203.0.113.54', origin: 'host-a' }), { qos: 1 });
    await closed;
    spoofer.end(true);
    await waitFor(() => a.requireAgent().logLines().some((line) => line.reason === 'bad-origin' && line.component === 'broker'), 'the refusal in the broker log');
    expect(await b.banned('sshd-sync')).not.to.include('203.0.113.54');
  });

  it('a client certificate with two CNs is refused, and the broker log says why', async () => {
    const twoNames = await ca.issue('two-cns', { cn: 'host-a/CN=evil' });
    const client = connect(`mqtts://127.0.0.3:${port}`, {
      ca: await readFile(ca.caFile),
      cert: await readFile(twoNames.certFile),
      key: await readFile(twoNames.keyFile),
      reconnectPeriod: 0,
    });
    const refused = await new Promise<Error>((resolve) => client.once('error', resolve).once('connect', () => resolve(new Error('connected'))));
    client.end(true);
    expect(refused.message).to.match(/Not authorized/i);
    await waitFor(
      () => b.requireAgent().logLines().some((line) => line.component === 'broker' && line.reason === 'bad-certificate' && /client certificate names 2 hosts \(CN "host-a", "evil"\)/.test(String(line.msg))),
      'the refusal naming both CNs in the broker log',
    );
  });

  it('an agent with verification off says so in its log', async () => {
    await b.requireAgent().stop();
    await b.writeConfig(['mqtt_tls_verify = false']);
    try {
      const agent = await b.startAgent();
      expect(agent.logLines().some((line) => line.level === 40 && /mqtt_tls_verify = false/.test(String(line.msg)))).to.equal(true);
    } finally {
      await b.requireAgent().stop();
      await b.writeConfig();
      await b.startAgent();
    }
  });
});
