/**
 * Whether an error says no more than that nothing answered (yet): a peer, hub or firewall
 * that is not started, down or filtered. `--check` reports those as warnings, since on a new
 * fleet the other hosts come up later and the agent keeps trying. A certificate that does not
 * verify, a TLS mismatch or a name that does not resolve will not fix itself: not this.
 */
export function onlyUnreachable(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    const code = (current as NodeJS.ErrnoException).code;
    if (code !== undefined && (code === 'ENOTFOUND' || code === 'EPROTO' || /^ERR_(TLS|SSL)_|CERT|UNABLE_TO_|SELF_SIGNED/.test(code))) return false;
  }
  return true;
}
