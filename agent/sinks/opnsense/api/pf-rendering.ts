import { isIPv6 } from 'node:net';

/**
 * An address as pf prints it, which is what alias_util/delete must be sent to match:
 * no /32 on IPv4 and no /128 on IPv6 single hosts, IPv6 lowercase and compressed.
 */
export function pfRendering(address: string): string {
  const text = address.trim();
  const slash = text.indexOf('/');
  let host = slash === -1 ? text : text.slice(0, slash);
  let mask = slash === -1 ? null : text.slice(slash + 1);
  if (host.includes(':')) {
    host = host.toLowerCase();
    // Let WHATWG URL compress plain hex IPv6 (RFC 5952, like inet_ntop); keep dotted forms.
    if (!host.includes('.') && isIPv6(host)) host = new URL(`http://[${host}]/`).hostname.slice(1, -1);
    if (mask === '128') mask = null;
  } else if (mask === '32') {
    mask = null;
  }
  return mask === null ? host : `${host}/${mask}`;
}
