import type { FunctionSpecOf } from '../../topology/topology-schema';
import type { DeviceDefaults } from '../device-defaults';
import type { BarMemoryAllocator, BarWritePath, DeviceBar, DeviceModel } from '../device-model';
import type { DmaPort } from '../dma-engine';
import type { NamespaceStore } from './namespace-store';
import { NvmeController } from './nvme-controller';
import type { NvmeObserver } from './nvme-events';
import { NvmeRegisterFile } from './nvme-register-file';
import { NVME_REG_DBS, nvmeDoorbellIndex } from './nvme-regs';

const REGISTER_BAR_SIZE = 16 * 1024;
const CMB_BAR = 2;
/** BAR0 from the first doorbell to its end: 1536 queue pairs' doorbells at the 4-byte stride. */
export const NVME_DOORBELL_WINDOW = { offset: NVME_REG_DBS, length: REGISTER_BAR_SIZE - NVME_REG_DBS };

/** Samsung PM173x-class controller: class 0x010802 (mass storage, NVM, NVMe I/O controller). */
export const NVME_DEFAULTS: DeviceDefaults = {
  ids: { vendorId: 0x144d, deviceId: 0xa824, classCode: 0x010802, revision: 0, subsystemVendorId: 0x144d, subsystemId: 0xa801 },
  linkWidth: 4,
  romSize: 0,
};

export interface NvmeDeviceContext {
  readonly allocate: BarMemoryAllocator;
  /** The function's bus-master port: queues, PRP lists and data it reaches outside its CMB. */
  readonly dma: DmaPort;
  /** The namespaces, NSID 1 first. */
  readonly namespaces: readonly NamespaceStore[];
  readonly observer?: NvmeObserver;
}

/**
 * An NVMe controller that runs commands (nvme-controller.ts).
 *
 * BAR0: 16 KiB, 64-bit non-prefetchable as NVMe requires (MLBAR/MUBAR).
 * Its controller registers are MMIO registers; its doorbells (0x1000 up)
 * are a window of memory, so that a bus master can ring them: vfio-pci can
 * export the doorbell page as a dma-buf, and an RDMA NIC's WRITE into it
 * reaches the controller as a posted write (memoryWritten, path 'p2p')
 * exactly as a CPU's MmioWrite does (path 'mmio'). Either way the device
 * reads the doorbell dwords the write covered and rings each one whose
 * value changed: a notice carries no data, so a repeated or forged one
 * changes nothing.
 *
 * BAR2: the Controller Memory Buffer, 64-bit prefetchable, which CMBLOC.BIR
 * names, so it can be a p2pdma provider (nvme_map_cmb() ->
 * pci_p2pdma_add_resource()); queues, PRP lists and data may live in it.
 */
export function nvmeDevice(spec: FunctionSpecOf<'nvme'>, context: NvmeDeviceContext): Pick<DeviceModel, 'bars' | 'memoryWritten' | 'nvmeQueueDepths'> {
  const doorbells = context.allocate(0, NVME_DOORBELL_WINDOW.length);
  const cmb = context.allocate(CMB_BAR, spec.cmbSize);
  /** The last value the controller was given per doorbell (0 at reset), so an unchanged dword is not rung again. */
  const rung = new Map<number, number>();
  const controller = new NvmeController({
    port: context.dma,
    cmb: cmb.memory,
    cmbBar: CMB_BAR,
    namespaces: context.namespaces,
    identity: {
      vendorId: NVME_DEFAULTS.ids.vendorId,
      subsystemVendorId: NVME_DEFAULTS.ids.subsystemVendorId,
      serialNumber: `EMU${spec.bdf.replace(/[^0-9a-f]/gi, '').toUpperCase()}`,
      modelNumber: `p2p-dmabuf emulated NVMe ${spec.name}`,
      firmwareRevision: '1.0',
    },
    observer: (event) => {
      if (event.kind === 'state' && event.state === 'reset') {
        // A controller reset empties the queues; doorbells read as at power-on.
        rung.clear();
        doorbells.memory.write(0, Buffer.alloc(doorbells.memory.size));
      }
      context.observer?.(event);
    },
  });
  const registers = new NvmeRegisterFile(controller, doorbells.memory);
  const bars: DeviceBar[] = [
    {
      index: 0,
      size: REGISTER_BAR_SIZE,
      is64Bit: true,
      prefetchable: false,
      space: 'memory',
      kind: 'registers',
      registers,
      window: { offset: NVME_DOORBELL_WINDOW.offset, ...doorbells },
    },
    { index: CMB_BAR, size: spec.cmbSize, is64Bit: true, prefetchable: true, space: 'memory', kind: 'memory', ...cmb },
  ];
  const memoryWritten = (bar: number, offset: number, length: number, path: BarWritePath): void => {
    if (bar !== 0 || offset + length <= NVME_DOORBELL_WINDOW.offset) return;
    const first = Math.max(offset, NVME_DOORBELL_WINDOW.offset) & ~3;
    const end = Math.min(offset + length, REGISTER_BAR_SIZE);
    const values = doorbells.memory.read(first - NVME_DOORBELL_WINDOW.offset, Math.ceil((end - first) / 4) * 4);
    for (let at = first; at < end; at += 4) {
      const index = nvmeDoorbellIndex(at);
      const value = values.readUInt32LE(at - first);
      if (index === undefined || (rung.get(index) ?? 0) === value) continue;
      rung.set(index, value);
      controller.doorbell(index, value, path);
    }
  };
  return { bars, memoryWritten, nvmeQueueDepths: () => controller.queueDepths() };
}
