import { WireOp, type WireRequest, type WireResponse } from '../transport/fabric';
import { getU64, REQUEST_IMM, RequestField, RESPONSE_ORIGINAL, RESPONSE_RNR_TIMER, ResponseField } from './wire-layout';

/** Where a packet's payload is (wire-layout.ts), read before the payload is looked up. */
export interface PayloadRef {
  readonly placement: number;
  readonly locator: number;
  readonly bytes: number;
}

export function requestPayload(view: DataView, at: number): PayloadRef {
  return {
    placement: view.getUint8(at + RequestField.PLACEMENT),
    locator: view.getUint32(at + RequestField.LOCATOR, true),
    bytes: view.getUint32(at + RequestField.PAYLOAD_BYTES, true),
  };
}

export function responsePayload(view: DataView, at: number): PayloadRef {
  return {
    placement: view.getUint8(at + ResponseField.PLACEMENT),
    locator: view.getUint32(at + ResponseField.LOCATOR, true),
    bytes: view.getUint32(at + ResponseField.PAYLOAD_BYTES, true),
  };
}

/** The REQUEST packet at `at` as the responder gets it: from `srcGid` (the link's peer), with `payload` where it lies. */
export function readRequest(view: DataView, at: number, srcGid: string, payload: readonly Uint8Array[]): WireRequest {
  const op = view.getUint8(at + RequestField.OP) as WireOp;
  const atomic = op === WireOp.CMP_SWAP || op === WireOp.FETCH_ADD;
  return {
    op,
    srcGid,
    srcQpn: view.getUint32(at + RequestField.SRC_QPN, true),
    psn: view.getUint32(at + RequestField.PSN, true),
    remoteAddr: getU64(view, at + RequestField.VADDR),
    rkey: view.getUint32(at + RequestField.RKEY, true),
    length: view.getUint32(at + RequestField.LENGTH, true),
    payload,
    withImm: (view.getUint8(at + RequestField.FLAGS) & REQUEST_IMM) !== 0,
    immData: view.getUint32(at + RequestField.IMM, true),
    compareAdd: atomic ? view.getBigUint64(at + RequestField.COMPARE_ADD, true) : 0n,
    swap: atomic ? view.getBigUint64(at + RequestField.SWAP, true) : 0n,
  };
}

/** The RESPONSE packet at `at` as the requester's reply gets it; `data` is READ response data, if the packet places any. */
export function readResponse(view: DataView, at: number, data: readonly Uint8Array[] | undefined): WireResponse {
  const flags = view.getUint8(at + ResponseField.FLAGS);
  const response: { -readonly [K in keyof WireResponse]: WireResponse[K] } = {
    status: view.getInt32(at + ResponseField.STATUS, true) as WireResponse['status'],
  };
  if (data !== undefined) response.data = data;
  if ((flags & RESPONSE_ORIGINAL) !== 0) response.original = view.getBigUint64(at + ResponseField.ORIGINAL, true);
  if ((flags & RESPONSE_RNR_TIMER) !== 0) response.rnrTimer = view.getUint8(at + ResponseField.RNR_TIMER);
  return response;
}
