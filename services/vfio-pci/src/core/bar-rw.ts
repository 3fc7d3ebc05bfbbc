import { errno } from '@p2p/errno';
import type { MmioWidth, PciBar } from '../ports/pci-port';
import { PCI_ROM_ADDRESS, PCI_ROM_ADDRESS_ENABLE } from '../uapi/pci-regs';
import type { VfioPciCore } from './vfio-pci-core';

interface BarAccess {
  readonly bar: PciBar;
  readonly offset: number;
  /** The bytes that fit: count = min(count, end - pos). */
  readonly length: number;
}

/**
 * vfio_pci_bar_rw()'s checks: the BAR must be there (EINVAL), the offset
 * inside it (EINVAL), and the access is cut at its end; memory-space BARs and
 * the ROM need memory decode (vfio_pci_core_do_io_rw(): EIO). The kernel
 * reads decode from its virtual config space; here a register BAR's MMIO
 * answers whether it was decoded (registerAccess), so only memory BARs and
 * the ROM ask first.
 */
async function barAccess(core: VfioPciCore, index: number, offset: bigint, count: number): Promise<BarAccess> {
  const bar = core.bars.find((candidate) => candidate.index === index);
  if (bar === undefined) {
    throw errno('EINVAL', `${core.bdf} has no BAR ${index}`);
  }
  if (offset >= bar.size) {
    throw errno('EINVAL', `offset ${offset} is past the ${bar.size}-byte BAR ${index}`);
  }
  if ((bar.kind === 'memory' || bar.kind === 'rom') && !(await core.memoryEnabled())) {
    throw decodeOff(core);
  }
  return { bar, offset: Number(offset), length: Math.min(count, Number(bar.size - offset)) };
}

const decodeOff = (core: VfioPciCore): Error => errno('EIO', `${core.bdf}: memory decode is off (PCI_COMMAND_MEMORY clear or not in D0)`);

/**
 * A register access the function did not claim: EIO, as the decode check
 * before it would have said. Port I/O has no such check in vfio (its all-ones
 * read or dropped write is what the user gets).
 */
function registerAccess(core: VfioPciCore, access: BarAccess, decoded: boolean): void {
  if (!decoded && access.bar.kind === 'registers') throw decodeOff(core);
}

/**
 * The most one pci-emu BulkRead or BulkWrite carries. A region access goes
 * in pieces, as vfio_pci_core_do_io_rw() loops over one, so what it may move
 * is bounded by this service's message limit only, not by pci-emu's nor by
 * the 4 MiB a grpc-js client accepts by default.
 */
export const BULK_CHUNK_BYTES = 1024 * 1024;

/** Memory BAR or ROM bytes, BULK_CHUNK_BYTES per BulkRead. */
async function readMemory(core: VfioPciCore, access: BarAccess): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  for (let done = 0; done < access.length; done += BULK_CHUNK_BYTES) {
    pieces.push(await core.pci.bulkRead(core.bdf, access.bar.index, access.offset + done, Math.min(BULK_CHUNK_BYTES, access.length - done)));
  }
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
}

/** Memory BAR bytes, BULK_CHUNK_BYTES per BulkWrite; each piece is a view of `data`, not a copy. */
async function writeMemory(core: VfioPciCore, access: BarAccess, data: Uint8Array): Promise<void> {
  for (let done = 0; done < access.length; done += BULK_CHUNK_BYTES) {
    await core.pci.bulkWrite(core.bdf, access.bar.index, access.offset + done, data.subarray(done, Math.min(done + BULK_CHUNK_BYTES, access.length)));
  }
}

/** vfio_pci_core_do_io_rw(): the widest naturally aligned access that fits (no 8-byte port I/O). */
function ioWidth(offset: number, remaining: number, io: boolean): MmioWidth {
  if (!io && remaining >= 8 && offset % 8 === 0) return 8;
  if (remaining >= 4 && offset % 4 === 0) return 4;
  if (remaining >= 2 && offset % 2 === 0) return 2;
  return 1;
}

/** pci_map_rom() / pci_unmap_rom(): the ROM decodes only while PCI_ROM_ADDRESS_ENABLE is set. */
async function readRom(core: VfioPciCore, access: BarAccess): Promise<Uint8Array> {
  const romAddress = await core.pci.configRead(core.bdf, PCI_ROM_ADDRESS, 4);
  await core.pci.configWrite(core.bdf, PCI_ROM_ADDRESS, 4, (romAddress | PCI_ROM_ADDRESS_ENABLE) >>> 0);
  try {
    return await readMemory(core, access);
  } finally {
    await core.pci.configWrite(core.bdf, PCI_ROM_ADDRESS, 4, romAddress);
  }
}

/** Register and port I/O BARs: one MMIO access per chunk, little-endian. */
async function readRegisters(core: VfioPciCore, access: BarAccess): Promise<Uint8Array> {
  const out = new Uint8Array(access.length);
  for (let done = 0; done < access.length; ) {
    const width = ioWidth(access.offset + done, access.length - done, access.bar.kind === 'io');
    const { value, decoded } = await core.pci.mmioRead(core.bdf, access.bar.index, access.offset + done, width);
    registerAccess(core, access, decoded);
    for (let lane = 0; lane < width; lane++) out[done + lane] = Number((value >> BigInt(8 * lane)) & 0xffn);
    done += width;
  }
  return out;
}

async function writeRegisters(core: VfioPciCore, access: BarAccess, data: Uint8Array): Promise<void> {
  for (let done = 0; done < access.length; ) {
    const width = ioWidth(access.offset + done, access.length - done, access.bar.kind === 'io');
    let value = 0n;
    for (let lane = 0; lane < width; lane++) value |= BigInt(data[done + lane]!) << BigInt(8 * lane);
    registerAccess(core, access, await core.pci.mmioWrite(core.bdf, access.bar.index, access.offset + done, width, value));
    done += width;
  }
}

/** vfio_pci_bar_rw() reading a BAR (index 0-5) or the ROM (index 6), memory_lock held for reading. */
export async function barRegionRead(core: VfioPciCore, index: number, offset: bigint, count: number): Promise<Uint8Array> {
  return core.memoryLock.read(async () => {
    const access = await barAccess(core, index, offset, count);
    switch (access.bar.kind) {
      case 'memory':
        return readMemory(core, access);
      case 'rom':
        return readRom(core, access);
      default:
        return readRegisters(core, access);
    }
  });
}

/**
 * vfio_pci_bar_rw() writing a BAR (index 0-5), memory_lock held for reading:
 * writes run side by side and reach pci-emu in the order they arrived, as a
 * CPU's posted writes do. Returns the bytes written.
 */
export async function barRegionWrite(core: VfioPciCore, index: number, offset: bigint, data: Uint8Array): Promise<number> {
  return core.memoryLock.read(async () => {
    const access = await barAccess(core, index, offset, data.length);
    if (access.bar.kind === 'memory') {
      await writeMemory(core, access, data);
    } else {
      await writeRegisters(core, access, data);
    }
    return access.length;
  });
}
