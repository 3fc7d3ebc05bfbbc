import { canonicalGid } from '@p2p/verbs';

export { canonicalGid, gidBytes, gidText, GID_BYTES } from '@p2p/verbs';

/** The host part of a gRPC address for a GID: the IPv4 address of a mapped GID, else "[ipv6]". */
export function gidHost(gid: string): string {
  const address = gidAddress(gid);
  return address.includes(':') ? `[${address}]` : address;
}

/** The IP address of a GID, as sockets take it: IPv4 for a v4-mapped GID, else the IPv6 text. */
export function gidAddress(gid: string): string {
  const text = canonicalGid(gid);
  return text.startsWith('::ffff:') && text.includes('.') ? text.slice('::ffff:'.length) : text;
}
