import { errno } from '@p2p/errno';
import type { ConfigWidth } from '../ports/pci-port';
import { PCI_CFG_SPACE_EXP_SIZE } from '../uapi/pci-regs';
import { configWriteChunk } from './config-write';
import type { VfioPciCore } from './vfio-pci-core';
import { VirtualBars } from './virtual-bars';

/** vfio_config_do_rw(): accesses are chopped into naturally aligned chunks of 4, 2 or 1 bytes. */
function chunkWidth(offset: number, remaining: number): ConfigWidth {
  if (remaining >= 4 && offset % 4 === 0) return 4;
  if (remaining >= 2 && offset % 2 === 0) return 2;
  return 1;
}

/** The whole access inside config space (pdev->cfg_size), else EFAULT. */
function configOffset(offset: bigint, count: number): number {
  if (offset >= BigInt(PCI_CFG_SPACE_EXP_SIZE) || offset + BigInt(count) > BigInt(PCI_CFG_SPACE_EXP_SIZE)) {
    throw errno('EFAULT', `config access of ${count} bytes at ${offset} is outside the ${PCI_CFG_SPACE_EXP_SIZE}-byte config space`);
  }
  return Number(offset);
}

/** vfio_pci_config_rw() reading: vconfig for the BAR registers, the hardware for the rest. */
export async function configRegionRead(core: VfioPciCore, offset: bigint, count: number): Promise<Uint8Array> {
  const out = new Uint8Array(count);
  if (count === 0) return out;
  const start = configOffset(offset, count);
  for (let done = 0; done < count; ) {
    const at = start + done;
    const width = chunkWidth(at, count - done);
    const value = VirtualBars.covers(at) ? core.virtualBars.read(at, width) : await core.pci.configRead(core.bdf, at, width);
    for (let lane = 0; lane < width; lane++) out[done + lane] = (value >>> (8 * lane)) & 0xff;
    done += width;
  }
  return out;
}

/** vfio_pci_config_rw() writing, chunk by chunk, under memory_lock. Returns the bytes written. */
export async function configRegionWrite(core: VfioPciCore, offset: bigint, data: Uint8Array): Promise<number> {
  if (data.length === 0) return 0;
  const start = configOffset(offset, data.length);
  await core.memoryLock.run(async () => {
    for (let done = 0; done < data.length; ) {
      const at = start + done;
      const width = chunkWidth(at, data.length - done);
      let value = 0;
      for (let lane = 0; lane < width; lane++) value += data[done + lane]! * 2 ** (8 * lane);
      await configWriteChunk(core, at, width, value);
      done += width;
    }
  });
  return data.length;
}
