import type { RegistrySession } from '@p2p/dmabuf-client';
import type { vfio } from '@p2p/proto';
import { cpuView } from '@p2p/user-driver';
import { O_RDWR, vfioUapi } from '@p2p/vfio-pci';
import { rpc } from './rpc';

/** VFIO_DEVICE_FEATURE_DMA_BUF: the first `length` bytes of BAR `region` of the device behind `deviceFd` as a one-range dma-buf; its fd. */
export async function exportBarRange(device: vfio.VfioPciServiceClient, pid: number, deviceFd: number, region: number, length: number): Promise<number> {
  const exported = await rpc<vfio.DeviceFeatureResponse>((cb) =>
    device.deviceFeature(
      {
        pid,
        deviceFd,
        argsz: 0,
        flags: vfioUapi.VFIO_DEVICE_FEATURE_GET | vfioUapi.VFIO_DEVICE_FEATURE_DMA_BUF,
        payload: { $case: 'dmaBuf', value: { regionIndex: region, openFlags: O_RDWR, flags: 0, dmaRanges: [{ offset: 0n, length: BigInt(length) }] } },
      },
      cb,
    ),
  );
  return exported.fd;
}

/**
 * A heap buffer of the session's process holding `bytes`, mmapped: its fd,
 * buffer id, the address of the mapping, and the CPU's view of it (the
 * process's loads and stores, as a driver writes descriptors and polls
 * completions).
 */
export async function mapHeap(session: RegistrySession, bytes: Buffer): Promise<{ fd: number; bufferId: bigint; addr: bigint; view: Buffer }> {
  const { fd, bufferId } = await session.heapAllocate(bytes.length);
  await session.cpuWrite(fd, 0, bytes);
  const mapped = await session.mmapFd(fd, 0, bytes.length);
  return { fd, bufferId, addr: mapped.addr, view: cpuView(mapped) };
}
