import { expect } from 'chai';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig, publishUrls } from '../../../src/config.js';
import { hubOrder } from '../../../src/config-hub.js';

describe('config: clustered hub (broker_url with several instances, cluster_redis_url)', () => {
  it('takes several broker URLs, and a host publishes to them in its own order', () => {
    const config = parseConfig('node_id = web-1\nbroker_url = mqtt://hub1:1883 mqtts://hub2:8883\n', 'hub.cfg');
    expect(config.brokerUrls).to.deep.equal(['mqtt://hub1:1883', 'mqtts://hub2:8883']);
    expect(publishUrls(config)).to.deep.equal(hubOrder(config.brokerUrls, 'web-1'));
    expect(publishUrls(config)).to.have.members(config.brokerUrls);
  });

  it('a single URL and a mesh publish exactly as before', () => {
    expect(publishUrls(parseConfig('broker_url = mqtt://hub:1883\n', 'one.cfg'))).to.deep.equal(['mqtt://hub:1883']);
    expect(publishUrls(parseConfig('mq_ip = 192.0.2.10\nmq_port = 18862\n', 'mesh.cfg'))).to.deep.equal(['mqtt://192.0.2.10:18862']);
  });

  it('a fleet sharing one config spreads over the instances, each host always starting at the same one', () => {
    const urls = ['mqtt://a:1883', 'mqtt://b:1883', 'mqtt://c:1883'];
    const first = new Map<string, number>();
    for (let host = 0; host < 300; host++) {
      const order = hubOrder(urls, `web-${host}`);
      expect(order).to.have.members(urls);
      expect(hubOrder(urls, `web-${host}`)).to.deep.equal(order);
      // a rotation: after the first instance, the others in the configured order
      const start = urls.indexOf(order[0]!);
      expect(order).to.deep.equal([...urls.slice(start), ...urls.slice(0, start)]);
      first.set(order[0]!, (first.get(order[0]!) ?? 0) + 1);
    }
    for (const url of urls) expect(first.get(url), url).to.be.within(60, 140);
  });

  it('reads cluster_redis_url', () => {
    expect(parseConfig('cluster_redis_url = redis://:pw@10.0.0.5:6379/2\n', 'c.cfg').cluster).to.deep.equal({ redisUrl: 'redis://:pw@10.0.0.5:6379/2' });
    expect(parseConfig('cluster_redis_url = rediss://redis.example.net:6380\n', 'c.cfg').cluster).to.deep.equal({ redisUrl: 'rediss://redis.example.net:6380' });
    expect(parseConfig('mq_port = 1883\n', 'c.cfg').cluster).to.equal(undefined);
  });

  it('warns when a config with the Redis password in it can be read by everyone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sf2b-config-'));
    try {
      const file = join(dir, 'broker.cfg');
      await writeFile(file, 'cluster_redis_url = redis://:secret@127.0.0.1:6379\n');
      await chmod(file, 0o644);
      expect(loadConfig(file).warnings.join('\n')).to.match(/holds secrets and can be read by every user; fix: chmod 600/);
      await chmod(file, 0o600);
      expect(loadConfig(file).warnings).to.deep.equal([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  const bad: Array<[string, RegExp]> = [
    ['broker_url = mqtt://a:1 http://b', /broker_url: scheme http: is not supported/],
    ['broker_url = mqtt://a:1 mqtt://a:1', /broker_url: lists the same URL twice; fix: /],
    ['broker_url = mqtt://a:1 mqtt://u:p@b:1', /broker_url: credentials in the URL/],
    ['cluster_redis_url = http://10.0.0.5', /cluster_redis_url: scheme http: is not supported; fix: write redis:\/\/host:6379/],
    ['cluster_redis_url = not a url', /cluster_redis_url: is not a URL; fix: /],
    ['cluster_redis_url = redis://h:6379/x', /cluster_redis_url: "\/x" is not a database number/],
    ['cluster_redis_url = redis://h:6379?db=1', /cluster_redis_url: has a query or fragment/],
    ['cluster_redis_url = redis://h:6379\ncluster_redis_ca_file = /etc/ssl/ca.pem', /cluster_redis_ca_file: a CA needs TLS; fix: use a rediss:\/\/ URL/],
    ['cluster_redis_ca_file = /etc/ssl/ca.pem', /cluster_redis_ca_file: is set but cluster_redis_url is not/],
    ['cluster_redis_url = rediss://h:6380\ncluster_redis_ca_file = /nonexistent/ca.pem', /cluster_redis_ca_file: cannot read \/nonexistent\/ca\.pem \(ENOENT\); fix: correct the path/],
  ];
  for (const [text, message] of bad) {
    it(`stops with one clear message on ${JSON.stringify(text)}`, () => {
      expect(() => parseConfig(text, 'bad.cfg')).to.throw(ConfigError, message);
    });
  }
});
