import { errno } from '@p2p/errno';

/*
 * The controller's registers (NVMe base specification 1.4, section 3.1
 * "Register Definition"), named as include/linux/nvme.h names them: the
 * offsets, the fields, and the fixed values this controller reports. The
 * register file (nvme-registers.ts) decodes offsets; the values that change
 * (CC, CSTS, AQA, ASQ, ACQ, CMBMSC, CMBSTS) live in NvmeController.
 */
export const NVME_REG_CAP = 0x00;
export const NVME_REG_VS = 0x08;
export const NVME_REG_INTMS = 0x0c;
export const NVME_REG_INTMC = 0x10;
export const NVME_REG_CC = 0x14;
export const NVME_REG_CSTS = 0x1c;
export const NVME_REG_AQA = 0x24;
export const NVME_REG_ASQ = 0x28;
export const NVME_REG_ACQ = 0x30;
export const NVME_REG_CMBLOC = 0x38;
export const NVME_REG_CMBSZ = 0x3c;
/** Controller Memory Buffer Memory Space Control, 64-bit (NVMe 1.4, "CMBMSC"). */
export const NVME_REG_CMBMSC = 0x50;
/** Controller Memory Buffer Status (NVMe 1.4, "CMBSTS"). */
export const NVME_REG_CMBSTS = 0x58;
/** SQ 0 tail doorbell; doorbell slot i is at NVME_REG_DBS + i * (4 << CAP.DSTRD). */
export const NVME_REG_DBS = 0x1000;

/*
 * CAP (1.4 section 3.1.1). Every I/O queue may hold NVME_MAX_QUEUE_ENTRIES;
 * queues must be physically contiguous (CQR), because the controller reads
 * a queue entry at base + index * size and keeps no PRP list per queue.
 */
/** MQES + 1: the most entries an I/O queue holds. */
export const NVME_MAX_QUEUE_ENTRIES = 1024;
/** CAP.DSTRD: doorbells are 4 << 0 bytes apart. */
export const NVME_DOORBELL_STRIDE = 0;
/** CAP.MPSMIN and CAP.MPSMAX: memory pages of 4 KiB (2 ^ (12 + 0)) to 64 KiB (2 ^ (12 + 4)). */
export const NVME_MPSMIN = 0;
export const NVME_MPSMAX = 4;
/** CAP.TO: the host waits up to 20 x 500 ms for CSTS.RDY to follow CC.EN. */
export const NVME_CAP_TIMEOUT = 20;
const NVME_CAP_CQR = 1n << 16n;
const NVME_CAP_CSS_NVM = 1n << 37n;
const NVME_CAP_CMBS = 1n << 57n;

/** CAP as read: MQES, CQR, TO, DSTRD, CSS (NVM command set only), MPSMIN/MAX, CMBS (CMBMSC is implemented). */
export const NVME_CAP: bigint =
  BigInt(NVME_MAX_QUEUE_ENTRIES - 1) |
  NVME_CAP_CQR |
  (BigInt(NVME_CAP_TIMEOUT) << 24n) |
  (BigInt(NVME_DOORBELL_STRIDE) << 32n) |
  NVME_CAP_CSS_NVM |
  (BigInt(NVME_MPSMIN) << 48n) |
  (BigInt(NVME_MPSMAX) << 52n) |
  NVME_CAP_CMBS;

/** VS 1.4.0: CMBLOC/CMBSZ read 0 until the host sets CMBMSC.CRE, and addresses reach the CMB only with CMBMSC.CMSE. */
export const NVME_VS_1_4 = 0x00010400;

/* CC (1.4 section 3.1.5). */
export const NVME_CC_ENABLE = 1 << 0;
export const NVME_CC_CSS_SHIFT = 4;
export const NVME_CC_MPS_SHIFT = 7;
export const NVME_CC_AMS_SHIFT = 11;
export const NVME_CC_SHN_SHIFT = 14;
export const NVME_CC_SHN_MASK = 3 << NVME_CC_SHN_SHIFT;
export const NVME_CC_SHN_NORMAL = 1 << NVME_CC_SHN_SHIFT;
export const NVME_CC_SHN_ABRUPT = 2 << NVME_CC_SHN_SHIFT;
export const NVME_CC_IOSQES_SHIFT = 16;
export const NVME_CC_IOCQES_SHIFT = 20;
/** EN, CSS, MPS, AMS, SHN, IOSQES, IOCQES: the rest of CC is reserved and reads 0. */
export const NVME_CC_WRITABLE = 0x00fffff1;
/** The only entry sizes of the NVM command set (2^6 = 64-byte SQEs, 2^4 = 16-byte CQEs). */
export const NVME_NVM_IOSQES = 6;
export const NVME_NVM_IOCQES = 4;
/** CC with EN, 4 KiB pages and the NVM queue entry sizes, as Linux's nvme_enable_ctrl() writes it. */
export const NVME_CC_NVM_ENABLE = NVME_CC_ENABLE | (NVME_NVM_IOSQES << NVME_CC_IOSQES_SHIFT) | (NVME_NVM_IOCQES << NVME_CC_IOCQES_SHIFT);

export const nvmeCcCss = (cc: number): number => (cc >>> NVME_CC_CSS_SHIFT) & 0x7;
export const nvmeCcMps = (cc: number): number => (cc >>> NVME_CC_MPS_SHIFT) & 0xf;
export const nvmeCcAms = (cc: number): number => (cc >>> NVME_CC_AMS_SHIFT) & 0x7;
export const nvmeCcIosqes = (cc: number): number => (cc >>> NVME_CC_IOSQES_SHIFT) & 0xf;
export const nvmeCcIocqes = (cc: number): number => (cc >>> NVME_CC_IOCQES_SHIFT) & 0xf;

/* CSTS (1.4 section 3.1.6). */
export const NVME_CSTS_RDY = 1 << 0;
/** Controller Fatal Status: an error the controller could not report in a completion queue. */
export const NVME_CSTS_CFS = 1 << 1;
export const NVME_CSTS_SHST_OCCUR = 1 << 2;
export const NVME_CSTS_SHST_CMPLT = 2 << 2;
export const NVME_CSTS_SHST_MASK = 3 << 2;

/* AQA (1.4 section 3.1.8): ASQS 11:0 and ACQS 27:16, 0's based. */
export const NVME_AQA_WRITABLE = 0x0fff0fff;
export const nvmeAqaAsqs = (aqa: number): number => aqa & 0xfff;
export const nvmeAqaAcqs = (aqa: number): number => (aqa >>> 16) & 0xfff;
/** ASQ/ACQ bits 11:0 are reserved: the queue bases are 4 KiB aligned at least. */
export const NVME_ADMIN_QUEUE_BASE_MASK = ~0xfffn & 0xffff_ffff_ffff_ffffn;

/* CMBLOC (1.4 section 3.1.11). */
/** CMB Queue Mixed Memory Support: an SQ and its CQ may be one in the CMB, one in host memory. */
export const NVME_CMBLOC_CQMMS = 1 << 3;
/** CMB Data Pointer Mixed Locations Support: PRP lists and the data they point at may be in different memories. */
export const NVME_CMBLOC_CDPMLS = 1 << 5;
/** CMB Data Pointer and Command Independent Locations Support: a command in host memory may point into the CMB and back. */
export const NVME_CMBLOC_CDPCILS = 1 << 6;

/* CMBSZ (1.4 section 3.1.12). */
export const NVME_CMBSZ_SQS = 1 << 0;
export const NVME_CMBSZ_CQS = 1 << 1;
export const NVME_CMBSZ_LISTS = 1 << 2;
export const NVME_CMBSZ_RDS = 1 << 3;
export const NVME_CMBSZ_WDS = 1 << 4;
export const NVME_CMBSZ_SZU_SHIFT = 8;
export const NVME_CMBSZ_SZ_SHIFT = 12;

/* CMBMSC and CMBSTS (NVMe 1.4, the Controller Memory Buffer Memory Space Control and Status registers). */
/** Capabilities Registers Enabled: CMBLOC and CMBSZ read their values (0 while clear). */
export const NVME_CMBMSC_CRE = 1n << 0n;
/** Controller Memory Space Enable: addresses in [CBA, CBA + size) reach the CMB. */
export const NVME_CMBMSC_CMSE = 1n << 1n;
/** CBA, bits 63:12: the address at which the controller recognizes its own CMB. */
export const NVME_CMBMSC_CBA_MASK = ~0xfffn & 0xffff_ffff_ffff_ffffn;
/** Controller Base Address Invalid: the last CMSE enable named a CBA whose range does not fit in 64 bits. */
export const NVME_CMBSTS_CBAI = 1 << 0;

/** Which uses of the CMB the controller supports (CMBSZ.SQS, CQS, LISTS, RDS, WDS). */
export interface NvmeCmbSupport {
  /** Admin and I/O submission queues. */
  readonly submissionQueues: boolean;
  /** Admin and I/O completion queues. */
  readonly completionQueues: boolean;
  /** PRP lists. */
  readonly prpLists: boolean;
  /** Data of commands that move data from the controller to the host (Read, Identify, Get Log Page). */
  readonly readData: boolean;
  /** Data of commands that move data from the host to the controller (Write). */
  readonly writeData: boolean;
}

export const NVME_CMB_SUPPORT_ALL: NvmeCmbSupport = {
  submissionQueues: true,
  completionQueues: true,
  prpLists: true,
  readData: true,
  writeData: true,
};

/** CMBSZ.SZU units: 4 KiB, 64 KiB, 1 MiB, 16 MiB, 256 MiB, 4 GiB, 64 GiB. */
const SZU_BYTES = [2 ** 12, 2 ** 16, 2 ** 20, 2 ** 24, 2 ** 28, 2 ** 32, 2 ** 36];

/**
 * CMBSZ for a CMB of `size` bytes: the supported uses, and the size in the
 * largest unit whose 20-bit count still holds it exactly. EINVAL if no unit does.
 */
export function nvmeCmbsz(size: number, support: NvmeCmbSupport): number {
  const unit = [...SZU_BYTES.keys()].reverse().find((u) => size % SZU_BYTES[u]! === 0 && size / SZU_BYTES[u]! < 2 ** 20);
  if (unit === undefined || size <= 0) {
    throw errno('EINVAL', `CMB size ${size} is not expressible in CMBSZ`);
  }
  const uses =
    (support.submissionQueues ? NVME_CMBSZ_SQS : 0) |
    (support.completionQueues ? NVME_CMBSZ_CQS : 0) |
    (support.prpLists ? NVME_CMBSZ_LISTS : 0) |
    (support.readData ? NVME_CMBSZ_RDS : 0) |
    (support.writeData ? NVME_CMBSZ_WDS : 0);
  return (size / SZU_BYTES[unit]!) * 2 ** NVME_CMBSZ_SZ_SHIFT + ((unit << NVME_CMBSZ_SZU_SHIFT) | uses);
}

/**
 * CMBLOC: the CMB at offset 0 of BAR `bir`; queues and data pointers may mix
 * CMB and host memory in any way (CQMMS, CDPMLS, CDPCILS), as each address
 * is resolved on its own.
 */
export function nvmeCmbloc(bir: number): number {
  return (bir & 0x7) | NVME_CMBLOC_CQMMS | NVME_CMBLOC_CDPMLS | NVME_CMBLOC_CDPCILS;
}

/**
 * The doorbell slot of a register offset (2y: SQ y tail, 2y + 1: CQ y head),
 * or undefined below NVME_REG_DBS or between slots.
 */
export function nvmeDoorbellIndex(offset: number, stride = NVME_DOORBELL_STRIDE): number | undefined {
  const width = 4 << stride;
  if (offset < NVME_REG_DBS || (offset - NVME_REG_DBS) % width !== 0) return undefined;
  return (offset - NVME_REG_DBS) / width;
}
