import { ERRNO_NAMES } from '@p2p/errno';
import {
  IBV_QP_ACCESS_FLAGS,
  IBV_QP_AV,
  IBV_QP_DEST_QPN,
  IBV_QP_MAX_DEST_RD_ATOMIC,
  IBV_QP_MAX_QP_RD_ATOMIC,
  IBV_QP_MIN_RNR_TIMER,
  IBV_QP_PATH_MTU,
  IBV_QP_PKEY_INDEX,
  IBV_QP_PORT,
  IBV_QP_RETRY_CNT,
  IBV_QP_RNR_RETRY,
  IBV_QP_RQ_PSN,
  IBV_QP_SQ_PSN,
  IBV_QP_STATE,
  IBV_QP_TIMEOUT,
} from '@p2p/verbs';
import { O_CLOEXEC, O_RDONLY, O_RDWR, O_WRONLY, vfioUapi } from '@p2p/vfio-pci';
import type { Prng } from './fuzz-prng';
import type { FieldShape, MessageShape, Scalar } from './fuzz-schema';

/** One verbs context of process A on one NIC and the objects made through it. */
export interface VerbsSet {
  /** 0 for nic0, 1 for nic1: calls about this context go to that NIC. */
  readonly nic: 0 | 1;
  readonly contextFd: number;
  readonly pdHandle: number;
  readonly cqHandle: number;
  readonly qpNum: number;
  readonly mrHandle: number;
  readonly lkey: number;
  readonly rkey: number;
  /** rkeys of MRs on the NIC at the other end of this context's QP (its heap MR, and accel0's BAR on nic1). */
  readonly peerRkeys: readonly number[];
}

/**
 * Live names a real session holds (pids, fds, handles, BDFs, tokens): mixed
 * into random requests so that calls get past the first lookup and reach
 * the deep paths. All of them are process A's (pids[0]), so that a request
 * naming A's pid and A's fd is one A, the platform and the administrator
 * may make.
 */
export interface Handles {
  /** A's pid first, then B's and the services' registry pids. */
  readonly pids: number[];
  readonly heapFds: number[];
  readonly deviceFds: number[];
  readonly dmaBufFds: number[];
  /** /dev/iommu and /dev/vfio/vfio contexts. */
  readonly iommufdFds: number[];
  /** Objects in those contexts: IOAS ids (and the small ids every context hands out first). */
  readonly iommufdIds: number[];
  /** Addresses in A's address space that an mmap of a heap buffer maps. */
  readonly userAddrs: bigint[];
  readonly verbs: VerbsSet[];
  readonly bdfs: string[];
  /** Attachment, buffer, notification and file ids. */
  readonly ids: bigint[];
  /** fd tokens and session credentials. */
  readonly tokens: string[];
  readonly ruleIds: string[];
  readonly gids: Buffer[];
  /** Byte offsets and lengths that land inside real buffers and BARs. */
  readonly extents: number[];
}

const U32_MAX = 0xffff_ffff;
const I32_MIN = -0x8000_0000;
const I32_MAX = 0x7fff_ffff;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** The edge values the brief names (0, -1, 2^31-1, 2^32-1, 2^53, 2^64-1), and neighbours, per type. */
const EDGE_U32 = [0, 1, 2, 3, 4, 7, 8, 64, 255, 4096, I32_MAX, 0x8000_0000, U32_MAX];
const EDGE_I32 = [0, 1, -1, 2, 4, 8, 4096, I32_MAX, I32_MIN];
const EDGE_U64 = [0n, 1n, 4n, 4096n, 65536n, (1n << 31n) - 1n, (1n << 32n) - 1n, 1n << 32n, 1n << 53n, (1n << 53n) + 1n, 1n << 63n, U64_MAX];
const EDGE_I64 = [...EDGE_U64.filter((v) => v <= I64_MAX), -1n, I64_MIN, I64_MAX];
const EDGE_DOUBLE = [0, -0, -1, 1, 50, 99.999, 100, 101, 2 ** 53, 1e308, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
const { VFIO_DEVICE_FEATURE_GET: GET, VFIO_DEVICE_FEATURE_SET: SET, VFIO_DEVICE_FEATURE_PROBE: PROBE } = vfioUapi;
/** VFIO_DEVICE_FEATURE's operation bits, alone and as PROBE pairs them. */
const FEATURE_OPS = [GET, SET, PROBE, GET | PROBE, SET | PROBE, GET | SET, 0];
/** Feature numbers: DMA_BUF most, the low-power ones, BUS_MASTER. */
const FEATURES = [vfioUapi.VFIO_DEVICE_FEATURE_DMA_BUF, vfioUapi.VFIO_DEVICE_FEATURE_DMA_BUF, vfioUapi.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, vfioUapi.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, vfioUapi.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, vfioUapi.VFIO_DEVICE_FEATURE_BUS_MASTER];
/** The attr_mask of each RC transition (ibv_modify_qp(3): RESET->INIT, INIT->RTR, RTR->RTS), the state alone, none, and every bit. */
const QP_ATTR_MASKS = [
  IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS,
  IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER,
  IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC,
  IBV_QP_STATE,
  0,
  (IBV_QP_DEST_QPN << 1) - 1,
];
const PATTERNS = ['*', '/', '/*', '**', '/p2p.pci.v1.PciEmuService/Mmio*', '/p2p.dmabuf.v1.DmaBufRegistryService/*', '*'.repeat(300), '/a*b*c*d*e*f*g*h*i*j*k*', 'no-slash'];
const STRINGS = ['', 'x', '*', '-1', '0x10', 'ü日本語🎉', 'a\u0000b', '\u0000', '\ud800', '../../../etc/passwd', '%s%n%x', '0000:07:00.0\u0000', '0000:07:00.0 ', ' ', 'ffff:ff:1f.7', '0000:00:00.0'];
/** How many bytes of strings and bytes one request may carry in all (under the 16 MiB message limit). */
const BULK_BUDGET = 6 * 1024 * 1024;

/**
 * Builds requests of a message shape. Most are plausible: every field a
 * live handle or a sensible value for its name (A's pid, A's fds, the
 * handles of one verbs context, an aligned offset), with a few fields
 * swapped for an edge or random value; the rest are wild: edge and random
 * values throughout. Every value is one the field's wire type takes: a
 * client-side serialization error would test nothing on the server.
 */
export class RequestGenerator {
  #budget = 0;
  #wildness = 0;
  #verbs: VerbsSet | undefined;
  #opening = false;

  constructor(
    private readonly prng: Prng,
    private readonly handles: Handles,
  ) {}

  /**
   * A request of `shape`, as ts-proto's fromPartial fills it in (`opening`:
   * the first message of a stream), and the NIC
   * its verbs handles belong to (where an rdma-nic call should go to reach
   * past the context lookup).
   */
  request(shape: MessageShape, options: { opening?: boolean } = {}): { request: Record<string, unknown>; nic: 0 | 1 } {
    this.#budget = BULK_BUDGET;
    this.#wildness = this.prng.chance(0.65) ? 0.12 : 0.75;
    this.#verbs = this.handles.verbs.length > 0 ? this.prng.pick(this.handles.verbs) : undefined;
    this.#opening = options.opening === true;
    const request = shape.fns.fromPartial(this.#message(shape, 0)) as Record<string, unknown>;
    return { request, nic: this.#verbs?.nic ?? 0 };
  }

  #message(shape: MessageShape, depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const field of shape.fields) {
      if (field.optional && this.prng.chance(0.5)) continue;
      out[field.name] = this.#field(field, depth);
    }
    if (shape.oneof !== undefined && this.prng.chance(0.8)) {
      // A stream's opening message is its oneof's first member (Hello, RegisterOwner) more often than not.
      const member = depth === 0 && this.#opening && this.prng.chance(0.7) ? shape.oneof.members[0]! : this.prng.pick(shape.oneof.members);
      const value = this.#single(member, depth);
      if (value !== undefined) out[shape.oneof.name] = { $case: member.name, value };
    }
    return out;
  }

  #field(field: FieldShape, depth: number): unknown {
    if (!field.repeated) return this.#single(field, depth);
    const wild = this.#wild();
    const count = wild && this.prng.chance(0.1) ? 100 + this.prng.below(1900) : wild ? this.prng.pick([0, 1, 2, 3, this.prng.below(9)]) : this.prng.pick([1, 1, 2]);
    const out: unknown[] = [];
    for (let i = 0; i < count; i++) {
      const value = this.#single(field, depth);
      if (value !== undefined) out.push(value);
    }
    return out;
  }

  #single(field: FieldShape, depth: number): unknown {
    const wild = this.#wild();
    switch (field.kind) {
      case 'message':
        // Absent sometimes (useOptionals=messages), and never deeper than the protos nest.
        return depth >= 4 || (wild && this.prng.chance(0.3)) ? undefined : this.#message(field.message(), depth + 1);
      case 'enum':
        return !wild && field.values.length > 0 ? this.prng.pick(field.values) : this.prng.pick([...field.values, -1, 99, I32_MAX, I32_MIN]);
      case 'scalar': {
        if (!wild || this.prng.chance(0.3)) {
          const hinted = fit(field.scalar, this.#hint(field.name));
          if (hinted !== undefined) return hinted;
        }
        return wild ? this.#scalar(field.scalar) : this.#plausible(field.scalar);
      }
    }
  }

  #wild(): boolean {
    return this.prng.chance(this.#wildness);
  }

  /** A live or sensible value for a field of this name, or undefined when there is none. */
  #hint(name: string): unknown {
    const h = this.handles;
    const r = this.prng;
    const v = this.#verbs;
    const from = <T>(items: readonly T[]): T | undefined => (items.length === 0 ? undefined : r.pick(items));
    switch (name) {
      case 'pid':
        return r.chance(0.85) ? h.pids[0] : r.chance(0.5) ? 0 : from(h.pids);
      case 'importerPid':
        return r.chance(0.7) ? 0 : from(h.pids);
      case 'toPid':
        return from(h.pids);
      case 'fd':
        return from([...h.heapFds, ...h.dmaBufFds, ...h.deviceFds, ...h.iommufdFds, ...(v ? [v.contextFd] : [])]);
      case 'iommufd':
      case 'containerFd':
        return from(h.iommufdFds);
      case 'mapFd':
        return from([...h.dmaBufFds, ...h.heapFds]);
      case 'ioasId':
      case 'ptId':
      case 'dstIoasId':
      case 'srcIoasId':
        return from(h.iommufdIds);
      case 'userVa':
      case 'vaddr':
        return from(h.userAddrs);
      case 'pinnerPid':
        return r.chance(0.7) ? 0 : from(h.pids);
      case 'pinId':
        return r.below(8);
      case 'heapFd':
        return from(h.heapFds);
      case 'deviceFd':
      case 'deviceFds':
        return from(h.deviceFds);
      case 'contextFd':
        return r.chance(0.9) ? v?.contextFd : from(h.verbs.map((s) => s.contextFd));
      case 'pdHandle':
        return v?.pdHandle;
      case 'cqHandle':
      case 'sendCqHandle':
      case 'recvCqHandle':
        return v?.cqHandle;
      case 'qpNum':
      case 'destQpNum':
        return r.chance(0.7) ? v?.qpNum : from(h.verbs.map((s) => s.qpNum));
      case 'mrHandle':
        return v?.mrHandle;
      case 'lkey':
        return v?.lkey;
      case 'rkey':
        return r.chance(0.6) && v !== undefined ? r.pick(v.peerRkeys) : r.chance(0.5) ? v?.rkey : from(h.verbs.map((s) => s.rkey));
      case 'bdf':
      case 'bdfs':
      case 'providerBdf':
      case 'clientBdf':
      case 'importerBdf':
        return name === 'importerBdf' && r.chance(0.3) ? '' : from(h.bdfs);
      case 'attachmentId':
      case 'bufferId':
      case 'notificationId':
      case 'fileId':
        return from(h.ids);
      case 'token':
      case 'credential':
        return from(h.tokens);
      case 'id':
        return from(h.ruleIds);
      case 'gid':
      case 'dgid':
        return from(h.gids);
      case 'methodPattern':
        return r.pick(PATTERNS);
      case 'errno':
        return r.chance(0.9) ? r.pick(ERRNO_NAMES) : r.pick(['', 'eio', 'EWHATEVER', 'EIO ']);
      case 'percentage':
        return r.pick([0, 50, 100]);
      case 'delayMs':
        return r.pick([0, 1, 10]);
      case 'grpcCode':
        return r.pick([0, 5, 14]);
      case 'maxActivations':
        return r.pick([0, 1, 3]);
      case 'bar':
        return r.pick([0, 2, 2, 4, 6]);
      case 'index':
        return r.pick([0, 2, 2, 6, 7, 7, 8]);
      case 'regionIndex':
        return r.pick([2, 2, 0, 4]);
      case 'width':
        return r.pick([1, 2, 4, 4, 8]);
      case 'count':
        return r.pick([1, 2, 4, 8, 64, 4096]);
      case 'addr':
        return r.chance(0.5) ? from(h.userAddrs) : from(h.extents);
      case 'offset':
      case 'length':
      case 'size':
      case 'iova':
      case 'dstIova':
      case 'srcIova':
      case 'remoteAddr':
      case 'segmentOffset':
      case 'dmaAddress':
        return from(h.extents);
      case 'openFlags':
        return r.pick([O_RDONLY, O_WRONLY, O_RDWR, O_RDWR | O_CLOEXEC]);
      case 'argsz':
        return r.chance(0.8) ? 0 : r.pick([8, 16, 24, 40]);
      case 'flags':
        return r.pick(FEATURE_OPS) | (r.chance(0.8) ? r.pick(FEATURES) : r.below(16));
      case 'nrRanges':
        return r.below(4);
      case 'portNum':
        return 1;
      case 'cqe':
      case 'maxSendWr':
      case 'maxRecvWr':
        return r.pick([1, 16, 64]);
      case 'maxSendSge':
      case 'maxRecvSge':
        return 1;
      case 'maxEntries':
        return r.pick([1, 16]);
      case 'access':
      case 'qpAccessFlags':
        return r.pick([0, 1, 7, 0xf]);
      case 'attrMask':
        return r.pick(QP_ATTR_MASKS);
      case 'pathMtu':
        return r.pick([1, 3, 5]);
      case 'maxRdAtomic':
      case 'maxDestRdAtomic':
        return r.pick([1, 16]);
      case 'timeout':
        return r.pick([0, 1, 14]);
      case 'retryCnt':
      case 'rnrRetry':
        return r.pick([0, 7]);
      case 'sendFlags':
        return r.pick([0, 2, 1 | 2]);
      case 'wqes':
        return r.bytes(64 * r.below(9));
      default:
        return undefined;
    }
  }

  /** A small, sensible value of a field with no hint. */
  #plausible(scalar: Scalar): unknown {
    const r = this.prng;
    switch (scalar) {
      case 'string':
        return r.pick(['fuzz', 'a', '']);
      case 'bytes': {
        const length = r.pick([4, 8, 64, 4096]);
        this.#budget -= length;
        return r.bytes(length);
      }
      case 'bool':
        return r.chance(0.5);
      case 'double':
      case 'float':
        return r.pick([0, 50, 100]);
      default:
        return fit(scalar, r.pick([0, 1, 2, 4, 8, 16]));
    }
  }

  #scalar(scalar: Scalar): unknown {
    const r = this.prng;
    switch (scalar) {
      case 'uint32':
      case 'fixed32':
        return r.chance(0.7) ? r.pick(EDGE_U32) : r.chance(0.5) ? r.below(256) : r.u32();
      case 'int32':
      case 'sint32':
      case 'sfixed32':
        return r.chance(0.7) ? r.pick(EDGE_I32) : r.u32() | 0;
      case 'uint64':
      case 'fixed64':
        return r.chance(0.7) ? r.pick(EDGE_U64) : r.chance(0.5) ? BigInt(r.below(1 << 20)) : r.u64();
      case 'int64':
      case 'sint64':
      case 'sfixed64':
        return r.chance(0.7) ? r.pick(EDGE_I64) : BigInt.asIntN(64, r.u64());
      case 'double':
      case 'float':
        return r.chance(0.7) ? r.pick(EDGE_DOUBLE) : r.u32() / 1000;
      case 'bool':
        return r.chance(0.5);
      case 'string':
        return this.#string();
      case 'bytes':
        return this.#bytes();
    }
  }

  #string(): string {
    const r = this.prng;
    if (r.chance(0.04) && this.#budget > 400_000) {
      const length = 100_000 + r.below(300_000);
      this.#budget -= length * 4;
      return r.pick(['A', 'é', '\u0000', '日']).repeat(length);
    }
    if (r.chance(0.6)) return r.pick(STRINGS);
    const length = r.below(64);
    let out = '';
    for (let i = 0; i < length; i++) out += String.fromCharCode(r.chance(0.9) ? 0x20 + r.below(0x5f) : r.below(0x3000));
    return out;
  }

  #bytes(): Buffer {
    const r = this.prng;
    if (r.chance(0.03) && this.#budget > 1024 * 1024) {
      const length = 1024 * 1024 + r.below(this.#budget - 1024 * 1024);
      this.#budget -= length;
      return r.bytes(length);
    }
    const length = r.pick([0, 0, 1, 4, 8, 16, 64, 4096, r.below(300)]);
    this.#budget -= length;
    return r.bytes(length);
  }
}

/**
 * Now and then (6% of requests) a way to spoil a request's bytes, chosen
 * up front so that every identity gets the same bytes: cut short, one byte
 * overwritten, or garbage appended. What arrives is then often no message
 * of the request type at all, as from a client with a broken encoder.
 */
export function corruption(prng: Prng): { readonly what: string; apply(bytes: Buffer): Buffer } | undefined {
  if (!prng.chance(0.06)) return undefined;
  const at = prng.u32() / 0x1_0000_0000;
  const value = prng.below(256);
  const garbage = prng.bytes(1 + prng.below(16));
  const percent = `${Math.floor(at * 100)}%`;
  switch (prng.below(3)) {
    case 0:
      return { what: `cut at ${percent}`, apply: (bytes) => bytes.subarray(0, Math.floor(bytes.length * at)) };
    case 1:
      return {
        what: `byte at ${percent} set to 0x${value.toString(16)}`,
        apply: (bytes) => {
          const out = Buffer.from(bytes);
          if (out.length > 0) out[Math.floor(out.length * at)] = value;
          return out;
        },
      };
    default:
      return { what: `${garbage.length} bytes appended`, apply: (bytes) => Buffer.concat([bytes, garbage]) };
  }
}

/** `value` as a field of `scalar` type accepts it, or undefined when it does not fit. */
function fit(scalar: Scalar, value: unknown): unknown {
  if (value === undefined) return undefined;
  switch (scalar) {
    case 'uint32':
    case 'fixed32':
      return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= U32_MAX ? value : undefined;
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return typeof value === 'number' && Number.isInteger(value) && value >= I32_MIN && value <= I32_MAX ? value : undefined;
    case 'uint64':
    case 'fixed64': {
      const big = typeof value === 'bigint' ? value : typeof value === 'number' && Number.isInteger(value) ? BigInt(value) : undefined;
      return big !== undefined && big >= 0n && big <= U64_MAX ? big : undefined;
    }
    case 'int64':
    case 'sint64':
    case 'sfixed64': {
      const big = typeof value === 'bigint' ? value : typeof value === 'number' && Number.isInteger(value) ? BigInt(value) : undefined;
      return big !== undefined && big >= I64_MIN && big <= I64_MAX ? big : undefined;
    }
    case 'string':
      return typeof value === 'string' ? value : undefined;
    case 'bytes':
      return Buffer.isBuffer(value) ? value : undefined;
    default:
      return typeof value === typeof (scalar === 'bool' ? true : 0) ? value : undefined;
  }
}
