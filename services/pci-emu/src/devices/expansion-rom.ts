import type { PciIds } from '../config-space/type0-header';

/** PCI Firmware spec: ROM header at 0, PCI Data Structure ("PCIR") right after it. */
const ROM_SIGNATURE = 0xaa55;
const PCIR_OFFSET = 0x1c;
const PCIR_LENGTH = 0x18;
const PCIR_REVISION = 3;
const CODE_TYPE_EFI = 0x03;
const INDICATOR_LAST_IMAGE = 0x80;
const IMAGE_UNIT = 512;

/**
 * A one-image expansion ROM filling `size` bytes: what pci_get_rom_size()
 * walks (0x55AA signature, pointer at 0x18 to a "PCIR" structure whose image
 * length covers the ROM and whose indicator marks the last image). The code
 * itself is zeros: nothing in the model executes it.
 */
export function buildExpansionRom(ids: PciIds, size: number): Buffer {
  const rom = Buffer.alloc(size);
  rom.writeUInt16LE(ROM_SIGNATURE, 0);
  rom.writeUInt16LE(PCIR_OFFSET, 0x18);
  const pcir = PCIR_OFFSET;
  rom.write('PCIR', pcir, 'latin1');
  rom.writeUInt16LE(ids.vendorId, pcir + 0x04);
  rom.writeUInt16LE(ids.deviceId, pcir + 0x06);
  rom.writeUInt16LE(PCIR_LENGTH, pcir + 0x0a);
  rom.writeUInt8(PCIR_REVISION, pcir + 0x0c);
  rom.writeUIntLE(ids.classCode, pcir + 0x0d, 3);
  rom.writeUInt16LE(size / IMAGE_UNIT, pcir + 0x10);
  rom.writeUInt8(CODE_TYPE_EFI, pcir + 0x14);
  rom.writeUInt8(INDICATOR_LAST_IMAGE, pcir + 0x15);
  return rom;
}
