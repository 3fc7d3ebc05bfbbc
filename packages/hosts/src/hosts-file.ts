import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { errno } from '@p2p/errno';
import { type HostLayout, loopback } from './layout';

/** The hosts file's name in the parent segment directory, beside the hosts' own directories. */
export const HOSTS_FILE = 'hosts.json';

const Address = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'host:port');
const Bdf = z.string().regex(/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/, 'a BDF, dddd:bb:dd.f');

const NicEntry = z.object({
  name: z.string().min(1),
  bdf: Bdf,
  /** The GID (index 0) as the wire spells it: the IPv4-mapped IPv6 address. */
  gid: z.string().min(1),
  /** The verbs service. */
  address: Address,
  /** Where its wire listens: the GID's address and the wire port every NIC shares. */
  wire: Address,
  metricsPort: z.number().int().min(-1).max(65535),
});

const HostEntry = z.object({
  name: z.string().min(1),
  index: z.number().int().min(0),
  /** The host's process (`npm start --hosts`: one process a host). */
  pid: z.number().int().positive().optional(),
  shmDir: z.string().refine((dir) => path.isAbsolute(dir), 'an absolute path'),
  /** PCI_EMU_TOPOLOGY of its pci-emu; absent: the built-in topology. */
  topology: z.string().optional(),
  services: z.object({ pciEmu: Address, vfioPci: Address, registry: Address }),
  metricsPorts: z.object({ pciEmu: z.number().int(), vfioPci: z.number().int(), registry: z.number().int() }),
  nics: z.array(NicEntry),
});

const HostsFileSchema = z.object({
  version: z.literal(1),
  hosts: z.array(HostEntry).min(1),
});

export type NicEntry = z.output<typeof NicEntry>;
export type HostEntry = z.output<typeof HostEntry>;
export type HostsFile = z.output<typeof HostsFileSchema>;

/** A host's entry from its layout and where it runs. */
export function hostEntry(layout: HostLayout, where: { shmDir: string; wirePort: number; topology?: string; pid?: number }): HostEntry {
  return {
    name: layout.name,
    index: layout.index,
    pid: where.pid,
    shmDir: where.shmDir,
    topology: where.topology,
    services: { pciEmu: loopback(layout.ports.pciEmu), vfioPci: loopback(layout.ports.vfioPci), registry: loopback(layout.ports.registry) },
    metricsPorts: layout.metricsPorts,
    // RoCEv2's GID of an IPv4 address: the IPv4-mapped IPv6 address (rdma_ip2gid()), as rdma-nic reports it.
    nics: layout.nics.map((nic) => ({ name: nic.name, bdf: nic.bdf, gid: `::ffff:${nic.gidAddress}`, address: loopback(nic.port), wire: `${nic.gidAddress}:${where.wirePort}`, metricsPort: nic.metricsPort })),
  };
}

/**
 * The hosts file at `file`: ENOENT when there is none, EINVAL naming the
 * file and each bad field when it is not one.
 */
export function readHostsFile(file: string): HostsFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw errno('ENOENT', `no hosts file ${file}`);
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw errno('EINVAL', `${file} is not JSON: ${(error as Error).message}`);
  }
  const parsed = HostsFileSchema.safeParse(json);
  if (!parsed.success) throw errno('EINVAL', `${file} is not a hosts file: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Writes the hosts file aside and renames it into place, so a reader sees the old file or the whole new one. */
export function writeHostsFile(file: string, hosts: readonly HostEntry[]): void {
  const content: HostsFile = { version: 1, hosts: [...hosts] };
  const aside = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(aside, `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(aside, file);
}
