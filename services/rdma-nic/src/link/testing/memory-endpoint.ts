import { copyAcross } from '../../memory/copy';
import { WcStatus } from '../../verbs/enums';
import { type FabricEndpoint, RNR_NAK, WireOp, type WireRequest, type WireResponse } from '../../transport/fabric';

/** A SEND as the endpoint got it, payload copied. */
export interface ReceivedSend {
  readonly qpn: number;
  readonly srcGid: string;
  readonly payload: Buffer;
  readonly withImm: boolean;
  readonly immData: number;
}

/**
 * A stand-in responder NIC for wire tests: one flat memory that RDMA WRITE,
 * READ and the atomics address directly (remoteAddr is the offset), guarded
 * by one rkey; SENDs are recorded. It can be told to drop requests or to
 * answer RNR, and records the RNR-cleared hints it hears.
 */
export class MemoryEndpoint implements FabricEndpoint {
  readonly gid: string;
  readonly memory: Buffer;
  readonly rkey: number;
  readonly sends: ReceivedSend[] = [];
  /** QPNs that retryAfterRnr() was called for, in order. */
  readonly rnrRetries: number[] = [];
  /** Requests receive() saw, answered or not. */
  received = 0;
  /** Answer RNR_NAK with this timer code to every SEND while set. */
  rnrTimer: number | undefined;
  /** Drop (answer nothing to) the requests this picks. */
  drop: (request: WireRequest) => boolean = () => false;
  /** Runs inside receive(), before the answer: a busy responder, say. */
  onReceive: (request: WireRequest) => void = () => undefined;

  constructor(gid: string, memoryBytes: number, rkey = 0x1234) {
    this.gid = gid;
    this.memory = Buffer.alloc(memoryBytes);
    this.rkey = rkey;
  }

  receive(qpn: number, request: WireRequest): WireResponse | undefined {
    this.received++;
    this.onReceive(request);
    if (this.drop(request)) return undefined;
    if (request.op === WireOp.SEND) {
      if (this.rnrTimer !== undefined) return { status: RNR_NAK, rnrTimer: this.rnrTimer };
      const payload = Buffer.alloc(request.length);
      copyAcross(request.payload, [payload], request.length);
      this.sends.push({ qpn, srcGid: request.srcGid, payload, withImm: request.withImm, immData: request.immData });
      return { status: WcStatus.SUCCESS };
    }
    const atomic = request.op === WireOp.CMP_SWAP || request.op === WireOp.FETCH_ADD;
    const length = atomic ? 8 : request.length;
    if (request.rkey !== this.rkey || request.remoteAddr + length > this.memory.length) return { status: WcStatus.REM_ACCESS_ERR };
    const target = this.memory.subarray(request.remoteAddr, request.remoteAddr + length);
    switch (request.op) {
      case WireOp.RDMA_WRITE:
        copyAcross(request.payload, [target], length);
        return { status: WcStatus.SUCCESS };
      case WireOp.RDMA_READ:
        return { status: WcStatus.SUCCESS, data: [target] };
      default: {
        const original = target.readBigUInt64LE(0);
        if (request.op === WireOp.FETCH_ADD) target.writeBigUInt64LE(BigInt.asUintN(64, original + request.compareAdd), 0);
        else if (original === request.compareAdd) target.writeBigUInt64LE(request.swap, 0);
        return { status: WcStatus.SUCCESS, original };
      }
    }
  }

  retryAfterRnr(qpn: number): void {
    this.rnrRetries.push(qpn);
  }
}
