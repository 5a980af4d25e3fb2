import { expect } from 'chai';
import { ConfigError, parseConfig } from '../../../src/config.js';

const parse = (lines: string) => parseConfig(`${lines}\n[jails]\nsshd = sshd-sync\nweb = web-sync\n`, 'nft.cfg');

describe('config: the nft_* keys', () => {
  it('is off by default, and on it takes the primary jails of [jails], the input hook, drop, every port', () => {
    expect(parse('').nftables.enabled).to.equal(false);
    expect(parse('nft_sync = true').nftables).to.deep.equal({ enabled: true, jails: ['sshd', 'web'], hooks: ['input'], verdict: 'drop', ports: [], reconcileIntervalS: 300 });
  });

  it('reads the jails, hooks, verdict, ports and reconcile interval given', () => {
    const { nftables } = parse('nft_sync = yes\nnft_jails = sshd postfix\nnft_hook = input forward\nnft_verdict = reject\nnft_ports = 22, 443 8000-8100\nnft_reconcile_interval = 60');
    expect(nftables).to.deep.equal({
      enabled: true,
      jails: ['sshd', 'postfix'],
      hooks: ['input', 'forward'],
      verdict: 'reject',
      ports: [{ from: 22, to: 22 }, { from: 443, to: 443 }, { from: 8000, to: 8100 }],
      reconcileIntervalS: 60,
    });
  });

  it('works without [jails] when nft_jails names the primary jails (a host that only enforces in nftables)', () => {
    const config = parseConfig('f2b_sync = false\nnft_sync = true\nnft_jails = sshd\n', 'nft-only.cfg');
    expect(config.nftables.jails).to.deep.equal(['sshd']);
    expect(config.unknownKeys).to.deep.equal([]);
  });

  for (const [lines, message] of [
    ['nft_sync = maybe', /nft\.cfg: nft_sync: "maybe" is not a boolean/],
    ['nft_hook = prerouting', /nft_hook: "prerouting" is not input or forward; fix: write input/],
    ['nft_verdict = accept', /nft_verdict: "accept" is not drop or reject/],
    ['nft_ports = 0', /nft_ports: "0" is not a port or a range of ports/],
    ['nft_ports = 70000', /nft_ports: "70000" is not a port/],
    ['nft_ports = 100-22', /nft_ports: "100-22" is not a port/],
    ['nft_ports = ssh', /nft_ports: "ssh" is not a port/],
    ['nft_jails = s$hd', /nft_jails: "s\$hd" is not a valid jail name/],
    ['nft_reconcile_interval = 0', /nft_reconcile_interval: "0" is not a number of seconds/],
  ] as const) {
    it(`stops start-up on ${lines}, naming the key and the fix`, () => {
      expect(() => parse(lines)).to.throw(ConfigError, message);
    });
  }

  it('refuses nft_sync with no primary jail to feed it', () => {
    expect(() => parseConfig('nft_sync = true\n', 'empty.cfg')).to.throw(ConfigError, /empty\.cfg: nft_jails: nft_sync is true but no primary jail feeds the sets/);
  });
});
