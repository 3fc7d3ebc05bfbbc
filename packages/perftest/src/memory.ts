import type { TlsConfig } from '@p2p/auth';
import { errno } from '@p2p/errno';
import { pci, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { errnoOf } from '@p2p/status';
import { O_RDWR, vfioUapi } from '@p2p/vfio-pci';
import type { HostMr } from '@p2p/verbs';
import { PERF_ACCESS, type MemoryRegion } from './connection';
import type { Endpoint } from './endpoint';

/** The BAR an accelerator's memory and an NVMe controller's CMB sit in, in the model's devices. */
export const DEVICE_MEMORY_BAR = 2;
/** Where a test's region starts in the NIC's address space (ibv_reg_mr_iova), host memory and BARs apart. */
export const HOST_IOVA = 0x1_0000_0000;
export const BAR_IOVA = 0x2_0000_0000;

/** A test's memory on one side: host memory (a system-heap dma-buf), or a BAR exported by vfio-pci as a dma-buf. */
export type MemorySpec = { readonly kind: 'host' } | { readonly kind: 'bar'; readonly name: string; readonly bdf: string; readonly bar: number };

/** What naming needs of a function (pci.FunctionInfo has it). */
export interface NamedFunction {
  readonly name: string;
  readonly bdf: string;
  readonly kind: pci.FunctionKind;
}

/** Every memory a test can use on this platform: host, each accelerator (its BAR2), each NVMe controller's CMB. */
export function memoryNames(functions: readonly NamedFunction[]): Map<string, MemorySpec> {
  const names = new Map<string, MemorySpec>([['host', { kind: 'host' }]]);
  for (const fn of functions) {
    if (fn.kind === pci.FunctionKind.FUNCTION_KIND_ACCEL) names.set(fn.name, { kind: 'bar', name: fn.name, bdf: fn.bdf, bar: DEVICE_MEMORY_BAR });
    if (fn.kind === pci.FunctionKind.FUNCTION_KIND_NVME) names.set(`${fn.name}-cmb`, { kind: 'bar', name: `${fn.name}-cmb`, bdf: fn.bdf, bar: DEVICE_MEMORY_BAR });
  }
  return names;
}

/** The memory `name` names (`host`, `accel0`, `nvme1-cmb`); EINVAL naming `flag` otherwise. */
export function memoryByName(name: string, functions: readonly NamedFunction[], flag: string): MemorySpec {
  const names = memoryNames(functions);
  const spec = names.get(name);
  if (spec === undefined) throw errno('EINVAL', `${flag} ${JSON.stringify(name)}: no such memory; one of ${[...names.keys()].join(', ')}`);
  return spec;
}

/** vfio-pci, for exporting BARs: its address, the administrator's token (bind is root's, as writing sysfs is), TLS. */
export interface VfioAccess {
  readonly address: string;
  readonly adminToken?: string;
  readonly tls?: TlsConfig;
}

/** A test's memory on one side, opened: how much of it there is, and registering a range of it. */
export interface OpenMemory {
  readonly spec: MemorySpec;
  /** The bytes a test may use: a BAR's size (VFIO_DEVICE_GET_REGION_INFO); host memory has no fixed size. */
  readonly size: number;
  /** A BAR's vfio device fd in the endpoint's fd table (config writes through vfio-pci go to it). */
  readonly deviceFd?: number;
  /**
   * Registers the first `length` bytes with the endpoint's NIC: a heap
   * buffer (ibv_reg_mr), or the range of the BAR exported by vfio-pci as a
   * dma-buf (ibv_reg_dmabuf_mr). Undone when the endpoint closes.
   */
  register(length: number): Promise<MemoryRegion>;
}

/**
 * Opens `spec` for a test on `endpoint`. For a BAR: binds the device to
 * vfio-pci if no one has (the administrator's bind; EBUSY: bound already),
 * opens it as the endpoint's process, and asks the BAR's size. Every step
 * is undone when the endpoint closes, a bind by an unbind.
 */
export async function openMemory(endpoint: Endpoint, spec: MemorySpec, access: VfioAccess): Promise<OpenMemory> {
  const { session, ctx, pd } = endpoint;
  const register = async (fd: number, length: number, iova: number, mrOf: (fd: number) => Promise<HostMr>): Promise<MemoryRegion> => {
    const mr = await mrOf(fd);
    endpoint.onClose(`deregister MR ${mr.mrHandle}`, () => ctx.deregMr(mr.mrHandle));
    return { lkey: mr.lkey, rkey: mr.rkey, iova, length };
  };
  if (spec.kind === 'host') {
    return {
      spec,
      size: Number.POSITIVE_INFINITY,
      register: async (length) => {
        const { fd } = await session.heapAllocate(length);
        endpoint.onClose(`close heap buffer fd ${fd}`, () => session.closeFd(fd));
        return register(fd, length, HOST_IOVA, (heapFd) => ctx.regMr(pd, { heapFd, length, iova: HOST_IOVA, access: PERF_ACCESS }));
      },
    };
  }
  const admin = connectPeer(vfio.VfioPciServiceDefinition, access.address, { name: 'vfio-pci', tls: access.tls, token: access.adminToken });
  const own = connectPeer(vfio.VfioPciServiceDefinition, access.address, { name: 'vfio-pci', tls: access.tls, token: session.credential });
  endpoint.onClose('close the vfio-pci channels', async () => {
    own.close();
    admin.close();
  });
  const bound = await admin.client.bind({ bdf: spec.bdf, variants: undefined }).then(
    () => true,
    (error: unknown) => {
      if (errnoOf(error) !== 'EBUSY') throw error;
      return false;
    },
  );
  // Unbound at the end, after the device's fd is closed: vfio-pci refuses while it is open.
  if (bound) endpoint.onClose(`unbind ${spec.bdf} from vfio-pci`, () => admin.client.unbind({ bdf: spec.bdf }));
  const { fd: deviceFd } = await own.client.openDevice({ pid: session.pid, bdf: spec.bdf });
  endpoint.onClose(`close ${spec.name}'s vfio device fd ${deviceFd}`, () => session.closeFd(deviceFd));
  const size = Number((await own.client.getRegionInfo({ pid: session.pid, deviceFd, index: spec.bar })).size);
  return {
    spec,
    size,
    deviceFd,
    register: async (length) => {
      if (length > size) throw errno('ENOSPC', `${spec.name} is ${size} bytes (BAR${spec.bar} of ${spec.bdf}): the test needs ${length}`);
      // VFIO_DEVICE_FEATURE_DMA_BUF of [0, length) of the BAR: a dma-buf fd in the endpoint's fd table.
      const { fd } = await own.client.deviceFeature({
        pid: session.pid,
        deviceFd,
        argsz: 0,
        flags: vfioUapi.VFIO_DEVICE_FEATURE_GET | vfioUapi.VFIO_DEVICE_FEATURE_DMA_BUF,
        payload: { $case: 'dmaBuf', value: { regionIndex: spec.bar, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(length) }] } },
      });
      endpoint.onClose(`close ${spec.name}'s dma-buf fd ${fd}`, () => session.closeFd(fd));
      return register(fd, length, BAR_IOVA, (dmabufFd) => ctx.regDmabufMr(pd, { fd: dmabufFd, offset: 0, length, iova: BAR_IOVA, access: PERF_ACCESS }));
    },
  };
}
