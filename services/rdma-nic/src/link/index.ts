/** The NIC-to-NIC wire across processes: RemoteFabric, and the GID text helpers both ends must agree on. */
export { RemoteFabric, DEFAULT_WIRE_PORT, DEFAULT_RING_BYTES, type RemoteFabricOptions } from './remote-fabric';
export type { WireCounters } from './wire-counters';
export { canonicalGid, gidBytes, gidText, gidHost, GID_BYTES } from './gid';
export { MIN_RING_BYTES, MAX_RING_BYTES } from './ring';
