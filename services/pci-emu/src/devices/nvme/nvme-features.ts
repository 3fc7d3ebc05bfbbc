import { NVME_WCTEMP } from './nvme-identify';
import { NVME_SC_CMD_SEQ_ERROR, NVME_SC_INVALID_FIELD, NVME_SC_SUCCESS, nvmeInvalid } from './nvme-status';

/* Feature identifiers (NVMe 1.4, "Feature Identifiers"), Linux's NVME_FEAT_*. */
export const NVME_FEAT_ARBITRATION = 0x01;
export const NVME_FEAT_POWER_MGMT = 0x02;
export const NVME_FEAT_TEMP_THRESH = 0x04;
export const NVME_FEAT_VOLATILE_WC = 0x06;
export const NVME_FEAT_NUM_QUEUES = 0x07;

/** Get Features SEL (NVMe 1.4, "Get Features command"): current, default, saved, supported capabilities. */
export const NVME_FEAT_SEL_CURRENT = 0;
export const NVME_FEAT_SEL_DEFAULT = 1;
export const NVME_FEAT_SEL_SAVED = 2;
export const NVME_FEAT_SEL_SUPPORTED = 3;
/** Capabilities (SEL 3): changeable; none is saveable or namespace specific. */
const NVME_FEAT_CAP_CHANGE = 1 << 2;

/** Arbitration: AB (burst) 2:0 "no limit", no weights: round robin only (CAP.AMS 0). */
const ARBITRATION_DEFAULT = 0x7;
const ARBITRATION_WRITABLE = 0xffffff07;
/** Power Management: PS 4:0 (must name an existing state: NPSS is 0), WH 7:5. */
const POWER_STATE_MASK = 0x1f;
const POWER_MGMT_WRITABLE = 0xff;
/** Temperature Threshold: TMPTH 15:0, TMPSEL 19:16 (0: composite; Fh: all sensors, on Set), THSEL 21:20 (0 over, 1 under). */
const TMPSEL_ALL = 0xf;
/** Number of Queues: FFFFh is not an allowed NSQR or NCQR (NVMe 1.4, "Number of Queues" feature). */
const NUM_QUEUES_INVALID = 0xffff;

export interface NvmeFeatureAnswer {
  readonly status: number;
  /** Completion queue entry DW0. */
  readonly result: number;
}

const answer = (result: number): NvmeFeatureAnswer => ({ status: NVME_SC_SUCCESS, result: result >>> 0 });
const refused = (status: number): NvmeFeatureAnswer => ({ status, result: 0 });

/**
 * The features a host may get and set (NVMe 1.4, "Features"): Arbitration,
 * Power Management, Temperature Threshold (composite sensor), Volatile
 * Write Cache and Number of Queues. None is saveable; a controller reset
 * brings every one back to its default. Number of Queues grants at most
 * `maxIoQueues` of each kind and may only be set before any I/O queue exists.
 */
export class NvmeFeatures {
  #arbitration = ARBITRATION_DEFAULT;
  #powerManagement = 0;
  #overTemperature = NVME_WCTEMP;
  #underTemperature = 0;
  #volatileWriteCache = true;
  #submissionQueues: number;
  #completionQueues: number;

  constructor(private readonly maxIoQueues: number) {
    this.#submissionQueues = maxIoQueues;
    this.#completionQueues = maxIoQueues;
  }

  static supports(fid: number): boolean {
    return [NVME_FEAT_ARBITRATION, NVME_FEAT_POWER_MGMT, NVME_FEAT_TEMP_THRESH, NVME_FEAT_VOLATILE_WC, NVME_FEAT_NUM_QUEUES].includes(fid);
  }

  /** Volatile Write Cache Enable: writes complete before they are durable, until a Flush. */
  get volatileWriteCache(): boolean {
    return this.#volatileWriteCache;
  }

  /** I/O submission and completion queues granted: valid QIDs are 1 .. these. */
  get submissionQueues(): number {
    return this.#submissionQueues;
  }

  get completionQueues(): number {
    return this.#completionQueues;
  }

  /** True if the composite temperature is at or beyond a threshold (SMART critical warning bit 1). */
  temperatureWarning(kelvins: number): boolean {
    return kelvins >= this.#overTemperature || kelvins <= this.#underTemperature;
  }

  reset(): void {
    this.#arbitration = ARBITRATION_DEFAULT;
    this.#powerManagement = 0;
    this.#overTemperature = NVME_WCTEMP;
    this.#underTemperature = 0;
    this.#volatileWriteCache = true;
    this.#submissionQueues = this.maxIoQueues;
    this.#completionQueues = this.maxIoQueues;
  }

  /** Get Features of a supported `fid`; SEL is valid (0 .. 3). */
  get(fid: number, select: number, cdw11: number): NvmeFeatureAnswer {
    if (select === NVME_FEAT_SEL_SUPPORTED) return answer(NVME_FEAT_CAP_CHANGE);
    // No feature is saveable, so the saved value is the default (NVMe 1.4, Get Features, SEL).
    const current = select === NVME_FEAT_SEL_CURRENT;
    switch (fid) {
      case NVME_FEAT_ARBITRATION:
        return answer(current ? this.#arbitration : ARBITRATION_DEFAULT);
      case NVME_FEAT_POWER_MGMT:
        return answer(current ? this.#powerManagement : 0);
      case NVME_FEAT_TEMP_THRESH: {
        const { tmpsel, under } = temperatureSelect(cdw11);
        if (tmpsel !== 0 || under === undefined) return refused(nvmeInvalid(NVME_SC_INVALID_FIELD));
        const value = under ? (current ? this.#underTemperature : 0) : current ? this.#overTemperature : NVME_WCTEMP;
        return answer(value | (cdw11 & 0x3f0000));
      }
      case NVME_FEAT_VOLATILE_WC:
        return answer(!current || this.#volatileWriteCache ? 1 : 0);
      default: {
        // NVME_FEAT_NUM_QUEUES: NSQA 15:0 and NCQA 31:16, 0's based.
        const [sq, cq] = current ? [this.#submissionQueues, this.#completionQueues] : [this.maxIoQueues, this.maxIoQueues];
        return answer((sq - 1) | ((cq - 1) << 16));
      }
    }
  }

  /** Set Features of a supported `fid` (SV clear, NSID checked); `ioQueuesExist` for Number of Queues. */
  set(fid: number, cdw11: number, ioQueuesExist: boolean): NvmeFeatureAnswer {
    switch (fid) {
      case NVME_FEAT_ARBITRATION:
        this.#arbitration = (cdw11 & ARBITRATION_WRITABLE) >>> 0;
        return answer(0);
      case NVME_FEAT_POWER_MGMT:
        if ((cdw11 & POWER_STATE_MASK) !== 0) return refused(nvmeInvalid(NVME_SC_INVALID_FIELD));
        this.#powerManagement = cdw11 & POWER_MGMT_WRITABLE;
        return answer(0);
      case NVME_FEAT_TEMP_THRESH: {
        const { tmpsel, under } = temperatureSelect(cdw11);
        if ((tmpsel !== 0 && tmpsel !== TMPSEL_ALL) || under === undefined) return refused(nvmeInvalid(NVME_SC_INVALID_FIELD));
        if (under) this.#underTemperature = cdw11 & 0xffff;
        else this.#overTemperature = cdw11 & 0xffff;
        return answer(0);
      }
      case NVME_FEAT_VOLATILE_WC:
        this.#volatileWriteCache = (cdw11 & 1) === 1;
        return answer(0);
      default:
        // NVME_FEAT_NUM_QUEUES.
        return this.#setNumberOfQueues(cdw11, ioQueuesExist);
    }
  }

  /** NSQR 15:0 and NCQR 31:16, 0's based; the answer is NSQA/NCQA, what was granted (QEMU's nvme_set_feature() order). */
  #setNumberOfQueues(cdw11: number, ioQueuesExist: boolean): NvmeFeatureAnswer {
    if (ioQueuesExist) return refused(nvmeInvalid(NVME_SC_CMD_SEQ_ERROR));
    const nsqr = cdw11 & 0xffff;
    const ncqr = cdw11 >>> 16;
    if (nsqr === NUM_QUEUES_INVALID || ncqr === NUM_QUEUES_INVALID) return refused(nvmeInvalid(NVME_SC_INVALID_FIELD));
    this.#submissionQueues = Math.min(nsqr + 1, this.maxIoQueues);
    this.#completionQueues = Math.min(ncqr + 1, this.maxIoQueues);
    return answer((this.#submissionQueues - 1) | ((this.#completionQueues - 1) << 16));
  }
}

/** TMPSEL, and THSEL as over (false) / under (true), undefined for a reserved THSEL. */
function temperatureSelect(cdw11: number): { tmpsel: number; under: boolean | undefined } {
  const thsel = (cdw11 >>> 20) & 0x3;
  return { tmpsel: (cdw11 >>> 16) & 0xf, under: thsel === 0 ? false : thsel === 1 ? true : undefined };
}

