import { ERRNO_NAMES } from '@p2p/errno';
import { PSN_MASK, RNR_NAK, WireOp } from '@p2p/rdma-nic';
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
import type { Prng } from '@p2p/chaos';
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
  /** rkeys of MRs on this context's NIC: what requests from the other end of the QP name. */
  readonly localRkeys: readonly number[];
  /** The QP this one is connected to, and its NIC's GID: the one sender whose wire requests this QP runs. */
  readonly peerQpNum: number;
  readonly peerGid: Buffer;
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
  /** The registry's incarnation, as A's session knows it: a wire hello naming it is offered a ring. */
  readonly incarnations: string[];
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
      case 'registryPid':
        return r.chance(0.8) ? h.pids[0] : r.pick([0, U32_MAX]);
      case 'registryIncarnation':
        return r.chance(0.8) ? from(h.incarnations) : undefined;
      case 'ringToken':
        return r.chance(0.5) ? '' : from(h.tokens);
      case 'ringBytes':
        return r.pick([0, MIN_RING_BYTES, MIN_RING_BYTES + 1, 1 << 20]);
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
 * Now and then (`rate`, by default 6% of requests) a way to spoil a
 * request's bytes, chosen up front so that every identity gets the same
 * bytes: cut short, one byte overwritten, or garbage appended. What arrives
 * is then often no message of the request type at all, as from a client
 * with a broken encoder.
 */
export function corruption(prng: Prng, rate = 0.06): { readonly what: string; apply(bytes: Buffer): Buffer } | undefined {
  if (!prng.chance(rate)) return undefined;
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

/**
 * The binary layout of WireFrame.packets that the NICs' wire codec reads
 * (rdma-nic's link/wire-layout.ts, little-endian): a frame header, then
 * packets back to back, each of a size its kind fixes. Written out here
 * rather than imported, so that the fuzzer speaks the documented format and
 * does not share the NIC's own encoder and its mistakes.
 */
export const WIRE_VERSION = 3;
const FRAME_HEADER_BYTES = 16;
const FRAME_RING_MAPPED = 0x01;
const PACKET = { REQUEST: 1, RESPONSE: 2, RNR_CLEARED: 3, GRANT_OFFER: 4, GRANT_STATE: 5, GRANT_DROP: 6 } as const;
const PLACEMENT = { NONE: 0, RING: 1, INLINE: 2, GRANT: 3, STREAM: 4 } as const;
const REQUEST_IMM = 0x01;
/** The smallest ring a NIC maps (a power of two from 64 KiB): the one the fuzzing peer offers. */
export const MIN_RING_BYTES = 64 * 1024;
/** The frame ring that follows the payload ring in the same buffer (a header page, then 1 MiB of records). */
export const FRAME_RING_BYTES = 4096 + 1024 * 1024;
/** Payloads of plausible requests: none, an atomic's word, a few cache lines, a page, the whole heap MR. */
const PAYLOAD_BYTES = [0, 1, 8, 64, 4096, 64 * 1024];
const EDGE_U8 = [0, 1, 2, 3, 4, 5, 0x7f, 0x80, 0xff];

/** One field of a packet: its offset, its width in bytes, its value. */
type WireField = readonly [offset: number, width: 1 | 4 | 8, value: number | bigint];

/**
 * What one conversation poses as: the NIC at the other end of a live RC
 * connection (`target`'s QP on `target.nic`), the next PSN it sends, the
 * link sequence number, and its own ring if it offers one (`ringAt`: the
 * ring position just past the last payload put in it).
 */
export interface WirePeer {
  readonly nic: 0 | 1;
  readonly target: VerbsSet | undefined;
  readonly ringBytes: number;
  psn: number;
  seq: number;
  ringAt: number;
  /** The frame sequence number of its next frame. */
  frameSeq: number;
}

/**
 * Frames a peer NIC sends on the wire, as ConnectRequest objects. Most are
 * plausible, to get past the codec into the responder: a hello that names
 * the target QP's peer GID and A's registry session (so that the NIC offers
 * its ring), then REQUESTs addressed to the target QP from its peer QP with
 * consecutive PSNs, the target NIC's rkeys and addresses inside its MRs,
 * payloads inline or in the peer's ring exactly where the packet says; and
 * now and then a field of a packet or the header swapped for an edge value.
 * RESPONSE and RNR_CLEARED packets go along, as a NIC sends them too.
 */
export class WireFrames {
  /** The chance that a plausible packet or header gets a field swapped for an edge value, per field. */
  #spoil = 0;

  constructor(
    private readonly prng: Prng,
    private readonly handles: Handles,
  ) {}

  /**
   * A conversation with `nic`, posing as the far end of `target` (one of
   * nic's QPs; without one, of a QP from the pools, or of none): the first
   * PSN, and whether to offer a ring.
   */
  peer(nic: 0 | 1, target?: VerbsSet): WirePeer {
    const r = this.prng;
    const pooled = this.handles.verbs.filter((set) => set.nic === nic);
    target ??= pooled.length > 0 ? r.pick(pooled) : undefined;
    // A fresh QP expects PSN 0 (one PSN ahead and every later one is dropped); a QP used before takes PSN 0 as a duplicate.
    const psn = r.chance(0.7) ? 0 : r.pick([1, 2, PSN_MASK, 0x800000, r.below(PSN_MASK + 1)]);
    return { nic, target, ringBytes: r.chance(0.5) ? MIN_RING_BYTES : 0, psn, seq: r.chance(0.9) ? 0 : r.u32(), ringAt: 0, frameSeq: 0 };
  }

  /**
   * A plausible hello of `peer`, given the ring it offers (its token; ''
   * for none), which it learns only once the NIC answered: every random
   * choice is made now, so that a seed replays the same conversation.
   */
  hello(peer: WirePeer): (ringToken: string) => Record<string, unknown> {
    const r = this.prng;
    const gid = peer.target?.peerGid ?? r.bytes(16);
    const announced = r.chance(0.9) ? peer.ringBytes : r.pick([0, 2 * peer.ringBytes, peer.ringBytes + 1]);
    const registryPid = this.handles.pids[0] ?? 0;
    const registryIncarnation = this.handles.incarnations[0] ?? '';
    return (ringToken) => ({ frame: { hello: { gid, registryPid, registryIncarnation, ringToken, ringBytes: BigInt(ringToken === '' ? 0 : announced) } } });
  }

  /**
   * A frame of 1 to 4 packets (now and then none, or many), mostly
   * plausible; `clean`: no field swapped, so that a conversation's first
   * frame reaches the responder before a broken one ends the link.
   */
  frame(peer: WirePeer, options: { clean?: boolean } = {}): Record<string, unknown> {
    const r = this.prng;
    this.#spoil = options.clean === true || r.chance(0.6) ? 0 : r.chance(0.7) ? 0.04 : 0.3;
    const inlineData: Buffer[] = [];
    const count = r.chance(0.05) ? r.pick([0, 32]) : 1 + r.below(4);
    const packets: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const kind = r.below(100);
      packets.push(
        kind < 78 ? this.#request(peer, inlineData) : kind < 85 ? this.#response(peer) : kind < 91 ? this.#rnrCleared(peer) : kind < 96 ? this.#grant(inlineData) : r.bytes(r.pick([1, 8, 40, 64])),
      );
    }
    // The credit says whether the sender maps the receiver's ring: the fuzzing peer never maps the NIC's, but may say it does.
    const header = this.#encode(FRAME_HEADER_BYTES, [
      [0, 1, WIRE_VERSION], // version
      [1, 1, r.chance(0.2) ? FRAME_RING_MAPPED : 0], // flags
      [4, 4, count], // packets
      [8, 4, r.chance(0.8) ? 0 : r.u32()], // consumed (ring credit)
      [12, 4, r.chance(0.95) ? peer.frameSeq++ >>> 0 : r.u32()], // frame sequence number
    ]);
    if (r.chance(0.1)) inlineData.push(r.bytes(r.pick([0, 8, 64])));
    return { frame: { packets: Buffer.concat([header, ...packets]), inlineData } };
  }

  /** A REQUEST of a random operation to the target QP, its payload inline or in the peer's ring. */
  #request(peer: WirePeer, inlineData: Buffer[]): Buffer {
    const r = this.prng;
    const target = peer.target;
    const op = r.chance(0.95) ? r.pick(Object.values(WireOp)) : r.pick([5, 0x7f, 0xff]);
    const atomic = op === WireOp.CMP_SWAP || op === WireOp.FETCH_ADD;
    const length = atomic ? 8 : r.pick(PAYLOAD_BYTES);
    // Now and then a payload one byte off the message length (short, mostly: the responder must not copy past it), as from a requester with a broken codec.
    const carried = op === WireOp.SEND || op === WireOp.RDMA_WRITE ? (length > 0 && r.chance(0.2) ? length + r.pick([-1, -1, 1]) : length) : 0;
    const { placement, locator } = this.#place(peer, carried, inlineData);
    // Inside the target's 64 KiB MRs (iova 0): a request that is refused ends the QP's run.
    const room = 64 * 1024 - length;
    const vaddr = atomic ? BigInt(8 * r.below(8)) : BigInt(r.pick([0, 0, Math.min(8, room), Math.min(4096, room), room]));
    return this.#encode(64, [
      [0, 1, PACKET.REQUEST], // kind
      [1, 1, op], // op
      [2, 1, r.chance(0.2) ? REQUEST_IMM : 0], // flags
      [3, 1, placement], // payload placement
      [4, 4, target?.qpNum ?? r.u32()], // destination QPN
      [8, 4, (peer.psn++ & PSN_MASK) >>> 0], // PSN
      [12, 4, target?.peerQpNum ?? r.u32()], // source QPN
      [16, 4, peer.seq++ >>> 0], // link sequence number
      [20, 4, target !== undefined && target.localRkeys.length > 0 && r.chance(0.9) ? r.pick(target.localRkeys) : r.u32()], // R_Key
      [24, 8, vaddr], // virtual address
      [32, 4, length], // DMA length
      [36, 4, r.u32()], // immediate data
      [40, 8, atomic ? r.u64() : 0n], // compare or add
      [48, 8, atomic ? r.u64() : 0n], // swap
      [56, 4, locator], // payload locator
      [60, 4, carried], // payload bytes
    ]);
  }

  /** An answer to a request the NIC never sent on this stream (it sends none on a stream a peer opened): stale, to be dropped. */
  #response(peer: WirePeer): Buffer {
    const r = this.prng;
    return this.#encode(40, [
      [0, 1, PACKET.RESPONSE], // kind
      [1, 1, r.below(4)], // flags
      [2, 1, r.below(32)], // RNR timer
      [3, 1, PLACEMENT.NONE], // payload placement
      [4, 4, peer.target?.peerQpNum ?? r.u32()], // the requester's QPN
      [8, 4, peer.psn & PSN_MASK], // PSN
      [12, 4, r.below(4)], // link sequence number
      [16, 4, r.pick([0, RNR_NAK, -2, 10, 0x7fff_ffff]) >>> 0], // status
      [24, 8, r.u64()], // original remote data
    ]);
  }

  /**
   * A grant packet: an offer of memory under a token the registry never
   * issued (or no token at all), a state for a grant the NIC never offered,
   * or a drop of one it was never given.
   */
  #grant(inlineData: Buffer[]): Buffer {
    const r = this.prng;
    const kind = r.pick([PACKET.GRANT_OFFER, PACKET.GRANT_STATE, PACKET.GRANT_DROP]);
    if (kind !== PACKET.GRANT_OFFER) return this.#encode(8, [[0, 1, kind], [1, 1, r.below(4)], [4, 4, r.below(4)]]);
    inlineData.push(Buffer.from(r.chance(0.8) ? '00000000-0000-4000-8000-000000000000' : ''), Buffer.from('0000:00:00.0'));
    return this.#encode(32, [
      [0, 1, kind],
      [4, 4, 1 + r.below(4)], // grant id
      [8, 8, r.u64()], // buffer id
      [16, 8, BigInt(r.pick([0, 4096, 64 * 1024]))], // size
      [24, 4, inlineData.length - 2], // the token's index
      [28, 4, r.chance(0.9) ? inlineData.length - 1 : r.u32()], // the BDF's index
    ]);
  }

  /** The hint that the target QP may retry what its peer answered RNR. */
  #rnrCleared(peer: WirePeer): Buffer {
    return this.#encode(8, [
      [0, 1, PACKET.RNR_CLEARED], // kind
      [4, 4, peer.target?.qpNum ?? this.prng.u32()], // the requester's QPN
    ]);
  }

  /**
   * Where a payload of `bytes` goes: nowhere when empty; else inline, or in
   * the peer's ring at the next position (skipping to its start when the
   * payload does not fit before its end), the locator the ring position
   * just past it.
   */
  #place(peer: WirePeer, bytes: number, inlineData: Buffer[]): { placement: number; locator: number } {
    const r = this.prng;
    // Now and then memory under a grant this peer was never given: a protocol error that ends the link.
    if (r.chance(0.02)) return { placement: PLACEMENT.GRANT, locator: r.below(4) };
    // Or bytes on a bulk stream this peer never dialled: the same.
    if (bytes > 0 && r.chance(0.01)) return { placement: PLACEMENT.STREAM, locator: 0 };
    if (bytes === 0) return { placement: PLACEMENT.NONE, locator: 0 };
    if (peer.ringBytes === 0 || r.chance(0.4)) {
      inlineData.push(r.bytes(bytes));
      return { placement: PLACEMENT.INLINE, locator: inlineData.length - 1 };
    }
    const offset = peer.ringAt % peer.ringBytes;
    if (offset + bytes > peer.ringBytes) peer.ringAt += peer.ringBytes - offset;
    peer.ringAt = (peer.ringAt + bytes) >>> 0;
    return { placement: PLACEMENT.RING, locator: peer.ringAt };
  }

  /** `size` bytes with `fields` stored in them; each field swapped for an edge value of its width with the frame's spoil chance. */
  #encode(size: number, fields: readonly WireField[]): Buffer {
    const r = this.prng;
    const out = Buffer.alloc(size);
    for (const [offset, width, planned] of fields) {
      const spoiled = r.chance(this.#spoil);
      if (width === 1) out.writeUInt8(spoiled ? r.pick(EDGE_U8) : Number(planned), offset);
      else if (width === 4) out.writeUInt32LE(spoiled ? r.pick(EDGE_U32) : Number(planned), offset);
      else out.writeBigUInt64LE(spoiled ? r.pick(EDGE_U64) : BigInt(planned), offset);
    }
    return out;
  }
}
