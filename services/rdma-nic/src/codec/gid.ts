import { isIPv4 } from 'node:net';
import { errno } from '@p2p/errno';

/**
 * The RoCEv2 GID of an IPv4 address: the IPv4-mapped IPv6 address, as the
 * kernel fills the GID table from a netdev's addresses (rdma_ip2gid() with
 * ipv6_addr_set_v4mapped()), spelled as the wire spells GIDs (link/gid.ts's
 * canonical text).
 */
export function gidFromIpv4(address: string): string {
  if (!isIPv4(address)) throw errno('EINVAL', `${address} is not an IPv4 address`);
  return `::ffff:${address}`;
}
