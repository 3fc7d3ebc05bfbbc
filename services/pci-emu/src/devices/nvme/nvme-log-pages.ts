import { NVME_ELPE } from './nvme-identify';

/* Log page identifiers (NVMe 1.4, "Get Log Page - Log Page Identifiers"), Linux's NVME_LOG_*. */
export const NVME_LOG_ERROR = 0x01;
export const NVME_LOG_SMART = 0x02;
export const NVME_LOG_FW_SLOT = 0x03;

const ERROR_ENTRY_SIZE = 64;
export const NVME_ERROR_LOG_ENTRIES = NVME_ELPE + 1;
export const NVME_SMART_LOG_SIZE = 512;
export const NVME_FW_SLOT_LOG_SIZE = 512;
/** The composite temperature the controller reports, in kelvins (QEMU's: 50 degrees C). */
export const NVME_COMPOSITE_TEMPERATURE = 0x143;
/** SMART critical warning bit 1: a temperature threshold is crossed. */
export const NVME_SMART_CRIT_TEMPERATURE = 1 << 1;
/** Parameter Error Location when the controller does not point at the field. */
const NO_PARAMETER_LOCATION = 0xffff;

/** One failed command, as the Error Information log keeps it. */
export interface NvmeError {
  readonly sqid: number;
  readonly commandId: number;
  /** The Status Field of the completion. */
  readonly status: number;
  /** The phase tag the completion was posted with. */
  readonly phase: boolean;
  readonly nsid: number;
  /** The command's first LBA (Read, Write, Write Zeroes), else 0. */
  readonly lba: bigint;
}

/**
 * The Error Information log (NVMe 1.4, "Error Information" log page): the last
 * NVME_ERROR_LOG_ENTRIES failed commands, newest first, each with the
 * lifetime error count at its time (1, 2, ...; 0 marks an empty entry).
 * It survives controller resets, like the SMART counters.
 */
export class NvmeErrorLog {
  #count = 0n;
  readonly #entries: Buffer[] = [];

  get count(): bigint {
    return this.#count;
  }

  record(error: NvmeError): void {
    this.#count++;
    const entry = Buffer.alloc(ERROR_ENTRY_SIZE);
    entry.writeBigUInt64LE(this.#count, 0);
    entry.writeUInt16LE(error.sqid, 8);
    entry.writeUInt16LE(error.commandId, 10);
    entry.writeUInt16LE(((error.status << 1) | (error.phase ? 1 : 0)) & 0xffff, 12);
    entry.writeUInt16LE(NO_PARAMETER_LOCATION, 14);
    entry.writeBigUInt64LE(error.lba, 16);
    entry.writeUInt32LE(error.nsid, 24);
    this.#entries.unshift(entry);
    if (this.#entries.length > NVME_ERROR_LOG_ENTRIES) this.#entries.pop();
  }

  page(): Buffer {
    return Buffer.concat([...this.#entries, Buffer.alloc((NVME_ERROR_LOG_ENTRIES - this.#entries.length) * ERROR_ENTRY_SIZE)]);
  }
}

/** What SMART counts per namespace (NVMe 1.4, "SMART / Health Information Log"), in the units it reports them from. */
export class NvmeIoCounters {
  /** 512-byte units of data read by Read commands. */
  unitsRead = 0n;
  /** 512-byte units of data written by Write commands (Write Zeroes writes none). */
  unitsWritten = 0n;
  /** Read commands completed. */
  readCommands = 0n;
  /** Write and Write Zeroes commands completed. */
  writeCommands = 0n;
  /** Commands completed with an Unrecovered Read Error or a Write Fault. */
  mediaErrors = 0n;

  add(other: NvmeIoCounters): void {
    this.unitsRead += other.unitsRead;
    this.unitsWritten += other.unitsWritten;
    this.readCommands += other.readCommands;
    this.writeCommands += other.writeCommands;
    this.mediaErrors += other.mediaErrors;
  }
}

/** A 128-bit little-endian counter whose upper half this model never reaches. */
function putU128(target: Buffer, at: number, value: bigint): void {
  target.writeBigUInt64LE(value & 0xffff_ffff_ffff_ffffn, at);
  target.writeBigUInt64LE(value >> 64n, at + 8);
}

/** "Reported in thousands ... rounded up" (NVMe 1.4 SMART / Health Information Log, Data Units Read and Written). */
const thousandsRoundedUp = (units: bigint): bigint => (units + 999n) / 1000n;

/**
 * The SMART / Health Information log (NVMe 1.4, "SMART / Health
 * Information"): data units in thousands of 512-byte units rounded up, host
 * commands, media errors and the lifetime number of error log entries. Busy
 * time, power cycles, power on hours and unsafe shutdowns are not modelled
 * and read 0.
 */
export function smartLog(counters: NvmeIoCounters, errorCount: bigint, temperatureWarning: boolean): Buffer {
  const data = Buffer.alloc(NVME_SMART_LOG_SIZE);
  data[0] = temperatureWarning ? NVME_SMART_CRIT_TEMPERATURE : 0;
  data.writeUInt16LE(NVME_COMPOSITE_TEMPERATURE, 1);
  data[3] = 100; // Available Spare, percent
  data[4] = 10; // Available Spare Threshold
  putU128(data, 32, thousandsRoundedUp(counters.unitsRead));
  putU128(data, 48, thousandsRoundedUp(counters.unitsWritten));
  putU128(data, 64, counters.readCommands);
  putU128(data, 80, counters.writeCommands);
  putU128(data, 160, counters.mediaErrors);
  putU128(data, 176, errorCount);
  return data;
}

/** The Firmware Slot Information log (NVMe 1.4, "Firmware Slot Information"): slot 1 active, holding `firmwareRevision`. */
export function firmwareSlotLog(firmwareRevision: string): Buffer {
  const data = Buffer.alloc(NVME_FW_SLOT_LOG_SIZE);
  data[0] = 1; // AFI: slot 1 is active
  data.write(firmwareRevision.padEnd(8, ' '), 8, 8, 'latin1');
  return data;
}
