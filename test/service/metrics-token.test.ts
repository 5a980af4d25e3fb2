import { expect } from 'chai';
import { freePort } from '../support/ports.js';
import { SimHost } from '../support/sim-host.js';

const TOKEN = 'a-long-random-metrics-token-0123456789';

describe('metrics_token: the metrics endpoint asks for a token when one is set', function () {
  this.timeout(60_000);
  let host: SimHost;
  let url: string;

  before(async () => {
    const metricsPort = await freePort('127.0.0.1');
    url = `http://127.0.0.1:${metricsPort}/metrics`;
    host = await SimHost.start({ name: 'metrics-token', ip: '127.0.0.4', port: await freePort('127.0.0.4'), fail2ban: false, extra: [`metrics_port = ${metricsPort}`, `metrics_token = ${TOKEN}`] });
    const agent = await host.startAgent();
    await agent.waitForOutput(/serving Prometheus metrics/, 'the metrics endpoint');
  });

  after(async () => {
    await host?.stop();
  });

  const scrape = (authorization?: string) => fetch(url, authorization ? { headers: { authorization } } : {});
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  it('refuses a scrape without the token, or with a wrong one, with 401 and how to authenticate', async () => {
    for (const authorization of [undefined, 'Bearer wrong-token', basic('prometheus', 'wrong'), `Token ${TOKEN}`]) {
      const response = await scrape(authorization);
      expect(response.status, String(authorization)).to.equal(401);
      expect(response.headers.get('www-authenticate')).to.match(/Bearer/);
      expect(await response.text()).not.to.include('syncfail2ban_up');
    }
  });

  it('serves the metrics for the token as a bearer token or as the basic-auth password', async () => {
    for (const authorization of [`Bearer ${TOKEN}`, basic('prometheus', TOKEN)]) {
      const response = await scrape(authorization);
      expect(response.status, authorization).to.equal(200);
      expect(await response.text()).to.match(/^syncfail2ban_up\{/m);
    }
  });
});
