/*
 * The Status Field of a completion queue entry (NVMe 1.4 section 4.6.1.2):
 * Status Code (SC, bits 7:0), Status Code Type (SCT, bits 10:8) and Do Not
 * Retry (DNR, bit 14), one number as include/linux/nvme.h encodes it, so
 * NVME_SC_LBA_RANGE | NVME_SC_DNR is the field a host reads (without the
 * phase tag, which the CQE adds below it).
 */

/* Generic Command Status, SCT 0 (NVMe 1.4, "Generic Command Status Definition"). */
export const NVME_SC_SUCCESS = 0x000;
export const NVME_SC_INVALID_OPCODE = 0x001;
export const NVME_SC_INVALID_FIELD = 0x002;
/** A DMA of the command's data failed: an IOMMU fault, a master abort, bus mastering off. */
export const NVME_SC_DATA_XFER_ERROR = 0x004;
/** Command Abort Requested: an Abort named the command while it still sat in its submission queue. */
export const NVME_SC_ABORT_REQ = 0x007;
/**
 * Command Aborted due to SQ Deletion. Never posted here: a fetched command
 * completes within its turn, and Delete I/O SQ drops unfetched ones silently.
 */
export const NVME_SC_ABORT_QUEUE = 0x008;
/** Invalid Namespace or Format. */
export const NVME_SC_INVALID_NS = 0x00b;
/** Command Sequence Error: e.g. Number of Queues set after an I/O queue exists. */
export const NVME_SC_CMD_SEQ_ERROR = 0x00c;
/** Invalid Use of Controller Memory Buffer: a use CMBSZ does not advertise. */
export const NVME_SC_CMB_INVALID_USE = 0x012;
/** Invalid PRP Offset: a PRP entry not dword aligned, or an offset where only a page address may be. */
export const NVME_SC_PRP_INVALID_OFFSET = 0x013;
/* Generic statuses of the NVM command set (same section, values 80h and up). */
export const NVME_SC_LBA_RANGE = 0x080;
/** Namespace Not Ready. Never posted here: a namespace store is ready from the start. */
export const NVME_SC_NS_NOT_READY = 0x082;

/* Command Specific Status, SCT 1 (NVMe 1.4, "Command Specific Status Definition"). */
export const NVME_SC_CQ_INVALID = 0x100;
export const NVME_SC_QID_INVALID = 0x101;
export const NVME_SC_QUEUE_SIZE = 0x102;
/** Abort Command Limit Exceeded. Never posted here: an Abort completes at once, so at most one is outstanding. */
export const NVME_SC_ABORT_LIMIT = 0x103;
export const NVME_SC_INVALID_VECTOR = 0x108;
export const NVME_SC_INVALID_LOG_PAGE = 0x109;
export const NVME_SC_INVALID_QUEUE = 0x10c;
export const NVME_SC_FEATURE_NOT_SAVEABLE = 0x10d;
/** Feature Not Changeable. Never posted here: every supported feature is changeable. */
export const NVME_SC_FEATURE_NOT_CHANGEABLE = 0x10e;
export const NVME_SC_FEATURE_NOT_PER_NS = 0x10f;

/* Media and Data Integrity Errors, SCT 2 (NVMe 1.4, "Media and Data Integrity Errors"). */
/** Write Fault: the namespace's backing store failed a write, flush or zeroing. */
export const NVME_SC_WRITE_FAULT = 0x280;
/** Unrecovered Read Error: the backing store failed a read. */
export const NVME_SC_READ_ERROR = 0x281;

/** Do Not Retry: the same command would fail again. */
export const NVME_SC_DNR = 0x4000;

/** A status with DNR set: the answer to a command the host got wrong. */
export const nvmeInvalid = (status: number): number => status | NVME_SC_DNR;
