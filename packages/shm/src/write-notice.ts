import { errno } from '@p2p/errno';
import { isValidSegmentName, MAX_SEGMENT_NAME_LENGTH } from './segment-name';

/**
 * A posted-write notice: bytes [offset, offset + length) of segment file
 * `segment` were written by a bus master (an RDMA NIC through a dma-buf of
 * BAR memory) and are in place. It carries no data: the device behind the
 * segment reads its own memory, so a spurious or forged notice costs it a
 * look and nothing else, and the socket needs no authentication.
 */
export interface WriteNotice {
  readonly segment: string;
  readonly offset: number;
  readonly length: number;
}

/** How pci-emu's segment files (BAR memory) are named: the segments a device may want write notices for. */
export const PCI_EMU_SEGMENT_PREFIX = 'pci-emu.';

/**
 * The Unix socket pci-emu listens on for write notices, in the segment
 * directory. Named as pci-emu's segment files are, so every filter that
 * sets those apart (the host-memory refusal, tests' segment counts) treats
 * it as pci-emu's; being a socket, no segment listing counts it.
 */
export const WRITE_NOTICE_SOCKET = `${PCI_EMU_SEGMENT_PREFIX}write-notices`;

/**
 * The record, little endian: u8 version (1), u8 name length n (1..255),
 * u64 offset, u64 length, then the n name bytes. Self-delimiting from its
 * first two bytes, so a reader keeps at most one partial record.
 */
export const WRITE_NOTICE_VERSION = 1;
const HEADER_BYTES = 18;
/** The largest record: a name of NAME_MAX bytes. */
export const MAX_WRITE_NOTICE_BYTES = HEADER_BYTES + MAX_SEGMENT_NAME_LENGTH;

const EMPTY = Buffer.alloc(0);
/** 2^53 / 2^32: the high word of the first u64 that is no safe integer. */
const UNSAFE_HIGH_WORD = 0x20_0000;

/** A notice's fields as the record holds them: a valid segment name, a non-empty range that stays below 2^53. */
export function isValidWriteNotice(segment: string, offset: number, length: number): boolean {
  return isValidSegmentName(segment) && Number.isSafeInteger(offset) && offset >= 0 && Number.isSafeInteger(length) && length > 0 && Number.isSafeInteger(offset + length);
}

/** The record of one notice; EINVAL for fields no record can hold. */
export function encodeWriteNotice(notice: WriteNotice): Buffer {
  const { segment, offset, length } = notice;
  if (!isValidWriteNotice(segment, offset, length)) {
    throw errno('EINVAL', `write notice ${JSON.stringify(segment)} [${offset}, +${length}) needs a segment name and a non-empty range below 2^53`);
  }
  const record = Buffer.allocUnsafe(HEADER_BYTES + segment.length);
  record.writeUInt8(WRITE_NOTICE_VERSION, 0);
  record.writeUInt8(segment.length, 1);
  writeU64(record, 2, offset);
  writeU64(record, 10, length);
  // Segment names are ASCII: one byte per character.
  record.write(segment, HEADER_BYTES, 'latin1');
  return record;
}

/**
 * The reading end of one connection: whole records out of the bytes as
 * they arrive, at most one partial record kept between chunks. A malformed
 * record is EINVAL: the stream cannot be resynchronised after it, so the
 * reader closes that connection.
 */
export class WriteNoticeDecoder {
  #pending = EMPTY;

  decode(chunk: Buffer): WriteNotice[] {
    const bytes = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const notices: WriteNotice[] = [];
    let at = 0;
    while (bytes.length - at >= 2) {
      const version = bytes.readUInt8(at);
      const nameLength = bytes.readUInt8(at + 1);
      if (version !== WRITE_NOTICE_VERSION || nameLength === 0) {
        throw errno('EINVAL', `write notice at byte ${at}: version ${version}, name length ${nameLength} (want version ${WRITE_NOTICE_VERSION}, a name)`);
      }
      const end = at + HEADER_BYTES + nameLength;
      if (bytes.length < end) break;
      notices.push(decodeRecord(bytes, at, nameLength));
      at = end;
    }
    this.#pending = at === bytes.length ? EMPTY : Buffer.from(bytes.subarray(at));
    return notices;
  }
}

function decodeRecord(bytes: Buffer, at: number, nameLength: number): WriteNotice {
  const offset = readU64(bytes, at + 2);
  const length = readU64(bytes, at + 10);
  const segment = bytes.toString('latin1', at + HEADER_BYTES, at + HEADER_BYTES + nameLength);
  if (offset === undefined || length === undefined || !isValidWriteNotice(segment, offset, length)) {
    throw errno('EINVAL', `write notice at byte ${at}: ${JSON.stringify(segment)} [${offset ?? '2^53+'}, +${length ?? '2^53+'}) is no segment name and non-empty range below 2^53`);
  }
  return { segment, offset, length };
}

function writeU64(bytes: Buffer, at: number, value: number): void {
  bytes.writeUInt32LE(value % 2 ** 32, at);
  bytes.writeUInt32LE(Math.floor(value / 2 ** 32), at + 4);
}

/** A u64 as a JS number; undefined past 2^53. */
function readU64(bytes: Buffer, at: number): number | undefined {
  const high = bytes.readUInt32LE(at + 4);
  return high >= UNSAFE_HIGH_WORD ? undefined : high * 2 ** 32 + bytes.readUInt32LE(at);
}
