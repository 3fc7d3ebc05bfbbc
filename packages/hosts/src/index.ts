/** @p2p/hosts: many emulated hosts on one machine, their port and address layout, and the hosts file that lists them. */
export { DEFAULT_BASES, MAX_HOSTS, PORT_STRIDE, hostLayout, hostLayouts, loopback, nicEnv, serviceEnv, type HostLayout, type LayoutBases, type NicLayout } from './layout';
export { HOSTS_FILE, hostEntry, readHostsFile, writeHostsFile, type HostEntry, type HostsFile, type NicEntry } from './hosts-file';
