import { createHash } from 'node:crypto';
import { errno } from '@p2p/errno';
import type { NamespaceStore } from './namespace-store';
import { NVME_NVM_IOCQES, NVME_NVM_IOSQES, NVME_VS_1_4 } from './nvme-regs';

/* Identify CNS values (NVMe 1.4, "Identify command", CNS), Linux's NVME_ID_CNS_*. */
export const NVME_ID_CNS_NS = 0x00;
export const NVME_ID_CNS_CTRL = 0x01;
export const NVME_ID_CNS_NS_ACTIVE_LIST = 0x02;
export const NVME_ID_CNS_NS_DESC_LIST = 0x03;

/** Every Identify data structure is 4 KiB. */
export const NVME_IDENTIFY_DATA_SIZE = 4096;
/** An active namespace list holds up to 1024 NSIDs, so no controller here has more namespaces. */
export const NVME_MAX_NAMESPACES = 1024;

/* Identify Controller fields this controller reports (NVMe 1.4, "Identify Controller Data Structure"). */
/** Abort Command Limit, 0's based: 4 Aborts may be outstanding. */
export const NVME_ACL = 3;
/** Error Log Page Entries, 0's based: the error log holds 64 entries. */
export const NVME_ELPE = 63;
/** Log Page Attributes: SMART per namespace (bit 0), extended NUMD and offset in Get Log Page (bit 2). */
export const NVME_LPA = (1 << 0) | (1 << 2);
/** Optional NVM Command Support: Write Zeroes (bit 3), Save/Select in Set/Get Features (bit 4). */
export const NVME_ONCS = (1 << 3) | (1 << 4);
/** Volatile Write Cache present (bit 0), Flush with NSID FFFFFFFFh supported (bits 2:1 = 11b). */
export const NVME_VWC = 0x07;
/** Warning and critical composite temperature thresholds, in kelvins (QEMU's values). */
export const NVME_WCTEMP = 0x157;
export const NVME_CCTEMP = 0x175;
/** Firmware updates: 1 slot, slot 1 read-only. */
const NVME_FRMW = (1 << 1) | 1;
/** Power state 0's maximum power: 25 W, in centiwatts. */
const NVME_PS0_MAX_POWER = 2500;
/** Namespace Identifier Type NGUID (NVMe 1.4, "Namespace Identification Descriptor"). */
const NVME_NIDT_NGUID = 0x02;
const NVME_NIDT_NGUID_LEN = 16;

/** Who the controller says it is. */
export interface NvmeIdentity {
  /** PCI vendor ID (VID) and subsystem vendor ID (SSVID). */
  readonly vendorId: number;
  readonly subsystemVendorId: number;
  /** SN: up to 20 printable ASCII characters. */
  readonly serialNumber: string;
  /** MN: up to 40. */
  readonly modelNumber: string;
  /** FR: up to 8. */
  readonly firmwareRevision: string;
}

/** What else Identify Controller reports. */
export interface NvmeControllerInfo {
  /** MDTS: the largest data transfer is 2^mdts pages of CAP.MPSMIN. */
  readonly mdts: number;
  /** NN: namespaces are 1 .. nn. */
  readonly namespaces: number;
}

const PRINTABLE = /^[\x20-\x7e]*$/;

/** EINVAL unless every string fits its field (NVMe 1.4 Identify Controller: SN, MN and FR are printable ASCII padded with spaces). */
export function checkNvmeIdentity(identity: NvmeIdentity): void {
  for (const [field, value, width] of [
    ['serial number', identity.serialNumber, 20],
    ['model number', identity.modelNumber, 40],
    ['firmware revision', identity.firmwareRevision, 8],
  ] as const) {
    if (!PRINTABLE.test(value) || value.length > width || value.trim() === '') {
      throw errno('EINVAL', `${field} ${JSON.stringify(value)} is not 1..${width} printable ASCII characters`);
    }
  }
}

function putString(target: Buffer, at: number, width: number, value: string): void {
  target.write(value.padEnd(width, ' '), at, width, 'latin1');
}

/** The subsystem NQN, unique per serial number (NVMe 1.4, "NVMe Qualified Names"). */
export const nvmeSubsystemNqn = (identity: NvmeIdentity): string => `nqn.2024-01.io.p2p-dmabuf:nvme:${identity.serialNumber.trim()}`;

/** Identify Controller (CNS 01h), NVMe 1.4 "Identify Controller Data Structure"; offsets as in Linux's struct nvme_id_ctrl. */
export function identifyController(identity: NvmeIdentity, info: NvmeControllerInfo): Buffer {
  const data = Buffer.alloc(NVME_IDENTIFY_DATA_SIZE);
  data.writeUInt16LE(identity.vendorId, 0);
  data.writeUInt16LE(identity.subsystemVendorId, 2);
  putString(data, 4, 20, identity.serialNumber);
  putString(data, 24, 40, identity.modelNumber);
  putString(data, 64, 8, identity.firmwareRevision);
  data[77] = info.mdts;
  data.writeUInt16LE(0, 78); // CNTLID: the only controller of its subsystem
  data.writeUInt32LE(NVME_VS_1_4, 80);
  data[111] = 1; // CNTRLTYPE: I/O controller
  data[258] = NVME_ACL;
  data[259] = 0; // AERL: Asynchronous Event Request is not implemented
  data[260] = NVME_FRMW;
  data[261] = NVME_LPA;
  data[262] = NVME_ELPE;
  data[263] = 0; // NPSS: power state 0 only
  data.writeUInt16LE(NVME_WCTEMP, 266);
  data.writeUInt16LE(NVME_CCTEMP, 268);
  data[512] = (NVME_NVM_IOSQES << 4) | NVME_NVM_IOSQES; // SQES: required and maximum
  data[513] = (NVME_NVM_IOCQES << 4) | NVME_NVM_IOCQES; // CQES
  data.writeUInt32LE(info.namespaces, 516);
  data.writeUInt16LE(NVME_ONCS, 520);
  data[525] = NVME_VWC;
  putNqn(data, 768, nvmeSubsystemNqn(identity));
  data.writeUInt16LE(NVME_PS0_MAX_POWER, 2048);
  return data;
}

/** SUBNQN: 256 bytes, NUL-terminated UTF-8. */
function putNqn(target: Buffer, at: number, nqn: string): void {
  target.write(nqn, at, 255, 'utf8');
}

/** A stable NGUID per namespace: the same serial number and NSID name the same disk across restarts. */
export function namespaceGuid(identity: NvmeIdentity, nsid: number): Buffer {
  return createHash('sha256').update(`${identity.serialNumber}/${nsid}`).digest().subarray(0, NVME_NIDT_NGUID_LEN);
}

/** Identify Namespace (CNS 00h), NVMe 1.4 "Identify Namespace Data Structure": one LBA format, the store's block size, no metadata. */
export function identifyNamespace(store: NamespaceStore, nguid: Buffer): Buffer {
  const data = Buffer.alloc(NVME_IDENTIFY_DATA_SIZE);
  const blocks = BigInt(store.blocks);
  data.writeBigUInt64LE(blocks, 0); // NSZE
  data.writeBigUInt64LE(blocks, 8); // NCAP
  data.writeBigUInt64LE(blocks, 16); // NUSE
  nguid.copy(data, 104);
  data[128 + 2] = Math.log2(store.blockSize); // LBAF0.LBADS; MS 0, RP 0
  return data;
}

/** Active Namespace ID list (CNS 02h): up to 1024 active NSIDs above `after`, ascending, zero-filled. */
export function activeNamespaceList(namespaces: number, after: number): Buffer {
  const data = Buffer.alloc(NVME_IDENTIFY_DATA_SIZE);
  for (let nsid = after + 1, at = 0; nsid <= namespaces && at < NVME_IDENTIFY_DATA_SIZE; nsid++, at += 4) {
    data.writeUInt32LE(nsid, at);
  }
  return data;
}

/** Namespace Identification Descriptor list (CNS 03h), NVMe 1.4 "Namespace Identification Descriptor": the NGUID, then a zero terminator. */
export function namespaceDescriptors(nguid: Buffer): Buffer {
  const data = Buffer.alloc(NVME_IDENTIFY_DATA_SIZE);
  data[0] = NVME_NIDT_NGUID;
  data[1] = NVME_NIDT_NGUID_LEN;
  nguid.copy(data, 4);
  return data;
}
