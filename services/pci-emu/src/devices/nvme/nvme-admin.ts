import { namespaceOf, type NamespaceStore } from './namespace-store';
import {
  abortCommand,
  createIoCompletionQueue,
  createIoSubmissionQueue,
  deleteIoCompletionQueue,
  deleteIoSubmissionQueue,
  type NvmeQueueContext,
} from './nvme-admin-queues';
import {
  NVME_ADMIN_ABORT_CMD,
  NVME_ADMIN_CREATE_CQ,
  NVME_ADMIN_CREATE_SQ,
  NVME_ADMIN_DELETE_CQ,
  NVME_ADMIN_DELETE_SQ,
  NVME_ADMIN_GET_FEATURES,
  NVME_ADMIN_GET_LOG_PAGE,
  NVME_ADMIN_IDENTIFY,
  NVME_ADMIN_SET_FEATURES,
  NVME_CMD_FUSE_MASK,
  NVME_CMD_PSDT_MASK,
  NVME_NSID_ALL,
  type NvmeCommand,
  type NvmeCommandResult,
  nvmeFailed,
} from './nvme-command';
import { NvmeFeatures, NVME_FEAT_SEL_SUPPORTED } from './nvme-features';
import {
  activeNamespaceList,
  identifyNamespace,
  namespaceDescriptors,
  NVME_ID_CNS_CTRL,
  NVME_ID_CNS_NS,
  NVME_ID_CNS_NS_ACTIVE_LIST,
  NVME_ID_CNS_NS_DESC_LIST,
  type NvmeIdentity,
} from './nvme-identify';
import { firmwareSlotLog, NVME_COMPOSITE_TEMPERATURE, NVME_LOG_ERROR, NVME_LOG_FW_SLOT, NVME_LOG_SMART, NvmeErrorLog, NvmeIoCounters, smartLog } from './nvme-log-pages';
import {
  NVME_SC_FEATURE_NOT_PER_NS,
  NVME_SC_FEATURE_NOT_SAVEABLE,
  NVME_SC_INVALID_FIELD,
  NVME_SC_INVALID_LOG_PAGE,
  NVME_SC_INVALID_NS,
  NVME_SC_INVALID_OPCODE,
  NVME_SC_SUCCESS,
  nvmeInvalid,
} from './nvme-status';

/** What the admin command set needs of the controller. */
export interface NvmeAdminContext extends NvmeQueueContext {
  readonly identity: NvmeIdentity;
  /** The Identify Controller data, built once. */
  readonly identifyController: Buffer;
  /** NSID n is namespaces[n - 1]. */
  readonly namespaces: readonly NamespaceStore[];
  readonly namespaceGuids: readonly Buffer[];
  readonly errors: NvmeErrorLog;
  /** Per namespace, as namespaces. */
  readonly counters: readonly NvmeIoCounters[];
  /** The most bytes one command may move (MDTS). */
  readonly maxTransferBytes: number;
  /** Sends `data` to the host through the command's PRPs: NVME_SC_SUCCESS or the status that stopped it. */
  transferToHost(command: NvmeCommand, data: Buffer): number;
}

type AdminHandler = (command: NvmeCommand, context: NvmeAdminContext) => NvmeCommandResult;

const HANDLERS: ReadonlyMap<number, AdminHandler> = new Map<number, AdminHandler>([
  [NVME_ADMIN_DELETE_SQ, deleteIoSubmissionQueue],
  [NVME_ADMIN_CREATE_SQ, createIoSubmissionQueue],
  [NVME_ADMIN_GET_LOG_PAGE, getLogPage],
  [NVME_ADMIN_DELETE_CQ, deleteIoCompletionQueue],
  [NVME_ADMIN_CREATE_CQ, createIoCompletionQueue],
  [NVME_ADMIN_IDENTIFY, identify],
  [NVME_ADMIN_ABORT_CMD, abortCommand],
  [NVME_ADMIN_SET_FEATURES, setFeatures],
  [NVME_ADMIN_GET_FEATURES, getFeatures],
]);

/**
 * Runs one admin command. Checked first, for every command (QEMU's
 * nvme_admin_cmd() order): the opcode (Invalid Command Opcode), then PSDT
 * (SGLs are not supported, and never for admin commands over PCIe) and FUSE
 * (no fused operations): Invalid Field.
 */
export function runAdminCommand(command: NvmeCommand, context: NvmeAdminContext): NvmeCommandResult {
  const handler = HANDLERS.get(command.opcode);
  if (handler === undefined) return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_OPCODE));
  if ((command.flags & (NVME_CMD_PSDT_MASK | NVME_CMD_FUSE_MASK)) !== 0) return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_FIELD));
  return handler(command, context);
}

/** Sends `data` and reports the bytes moved. */
function reply(command: NvmeCommand, context: NvmeAdminContext, data: Buffer): NvmeCommandResult {
  const status = context.transferToHost(command, data);
  return { status, result: 0, bytes: status === NVME_SC_SUCCESS ? data.length : 0 };
}

/**
 * Identify (NVMe 1.4, "Identify command"), CDW10.CNS: 00h a namespace (its
 * NSID must be an active namespace), 01h the controller, 02h active NSIDs
 * above NSID (FFFFFFFEh and FFFFFFFFh are invalid there), 03h a namespace's
 * identification descriptors. Other CNS values: Invalid Field.
 */
function identify(command: NvmeCommand, context: NvmeAdminContext): NvmeCommandResult {
  const cns = command.cdw10 & 0xff;
  const invalidNamespace = nvmeFailed(nvmeInvalid(NVME_SC_INVALID_NS));
  switch (cns) {
    case NVME_ID_CNS_NS:
    case NVME_ID_CNS_NS_DESC_LIST: {
      const store = namespaceOf(context.namespaces, command.nsid);
      if (store === undefined) return invalidNamespace;
      const nguid = context.namespaceGuids[command.nsid - 1]!;
      return reply(command, context, cns === NVME_ID_CNS_NS ? identifyNamespace(store, nguid) : namespaceDescriptors(nguid));
    }
    case NVME_ID_CNS_CTRL:
      return reply(command, context, context.identifyController);
    case NVME_ID_CNS_NS_ACTIVE_LIST:
      if (command.nsid >= NVME_NSID_ALL - 1) return invalidNamespace;
      return reply(command, context, activeNamespaceList(context.namespaces.length, command.nsid));
    default:
      return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_FIELD));
  }
}

/**
 * Get Log Page (NVMe 1.4, "Get Log Page command"): CDW10 LID 7:0, NUMDL
 * 31:16; CDW11 NUMDU 15:0; CDW12/13 the byte offset (LPA bit 2). Checked in
 * order: the length ((NUMD + 1) dwords) against MDTS and the offset's dword
 * alignment (Invalid Field), the LID (Invalid Log Page), an offset past the
 * page (Invalid Field), and for SMART the NSID: 0 or FFFFFFFFh the
 * controller, an active namespace that namespace (LPA bit 0), else Invalid
 * Namespace. Only the bytes of the page from the offset are transferred, up
 * to the length.
 */
function getLogPage(command: NvmeCommand, context: NvmeAdminContext): NvmeCommandResult {
  const lid = command.cdw10 & 0xff;
  const length = ((command.cdw11 & 0xffff) * 0x10000 + (command.cdw10 >>> 16) + 1) * 4;
  const offset = (BigInt(command.cdw13) << 32n) | BigInt(command.cdw12);
  if (length > context.maxTransferBytes || (offset & 0x3n) !== 0n) return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_FIELD));
  let page: Buffer;
  switch (lid) {
    case NVME_LOG_ERROR:
      page = context.errors.page();
      break;
    case NVME_LOG_SMART: {
      const counters = smartCounters(command.nsid, context);
      if (counters === undefined) return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_NS));
      page = smartLog(counters, context.errors.count, context.features.temperatureWarning(NVME_COMPOSITE_TEMPERATURE));
      break;
    }
    case NVME_LOG_FW_SLOT:
      page = firmwareSlotLog(context.identity.firmwareRevision);
      break;
    default:
      return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_LOG_PAGE));
  }
  if (offset >= BigInt(page.length)) return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_FIELD));
  const from = Number(offset);
  return reply(command, context, page.subarray(from, from + Math.min(length, page.length - from)));
}

function smartCounters(nsid: number, context: NvmeAdminContext): NvmeIoCounters | undefined {
  if (nsid === 0 || nsid === NVME_NSID_ALL) {
    const total = new NvmeIoCounters();
    for (const counters of context.counters) total.add(counters);
    return total;
  }
  return namespaceOf(context.namespaces, nsid) && context.counters[nsid - 1];
}

/** CDW10: FID 7:0; Get Features SEL 10:8; Set Features SV bit 31. */
const featureId = (command: NvmeCommand): number => command.cdw10 & 0xff;
const NVME_FEAT_SAVE = 1 << 31;

/**
 * Get Features (NVMe 1.4, "Get Features command"): an unsupported FID or
 * a reserved SEL is Invalid Field.
 */
function getFeatures(command: NvmeCommand, context: NvmeAdminContext): NvmeCommandResult {
  const fid = featureId(command);
  const select = (command.cdw10 >>> 8) & 0x7;
  if (!NvmeFeatures.supports(fid) || select > NVME_FEAT_SEL_SUPPORTED) return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_FIELD));
  return { ...context.features.get(fid, select, command.cdw11), bytes: 0 };
}

/**
 * Set Features (NVMe 1.4, "Set Features command"), checked in QEMU's
 * nvme_set_feature() order: an unsupported FID (Invalid Field), SV set
 * (Feature Identifier Not Saveable: no feature is), an NSID other than 0 and
 * FFFFFFFFh (Invalid Namespace if no such namespace, else Feature Not
 * Namespace Specific), then the feature's own checks.
 */
function setFeatures(command: NvmeCommand, context: NvmeAdminContext): NvmeCommandResult {
  const fid = featureId(command);
  if (!NvmeFeatures.supports(fid)) return nvmeFailed(nvmeInvalid(NVME_SC_INVALID_FIELD));
  if ((command.cdw10 & NVME_FEAT_SAVE) !== 0) return nvmeFailed(nvmeInvalid(NVME_SC_FEATURE_NOT_SAVEABLE));
  if (command.nsid !== 0 && command.nsid !== NVME_NSID_ALL) {
    const status = namespaceOf(context.namespaces, command.nsid) === undefined ? NVME_SC_INVALID_NS : NVME_SC_FEATURE_NOT_PER_NS;
    return nvmeFailed(nvmeInvalid(status));
  }
  return { ...context.features.set(fid, command.cdw11, context.sqs.size > 1 || context.cqs.size > 1), bytes: 0 };
}
