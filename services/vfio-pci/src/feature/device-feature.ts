import { errno } from '@p2p/errno';
import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_MINSZ,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
} from '../uapi/vfio';
import { checkU32, hex } from '../uapi/u64';
import { UserBuffer } from '../uapi/user-buffer';

/** One VFIO_DEVICE_FEATURE call as a feature handler sees it (vfio_pci_core_ioctl_feature()'s arguments). */
export interface FeatureCall {
  /** The feature number and the GET/SET/PROBE bits. */
  readonly flags: number;
  /** feature.argsz - minsz: the bytes the caller says follow the header. */
  readonly argsz: number;
  /** arg->data: the caller's memory after the header. */
  readonly data: UserBuffer;
}

/**
 * vfio_ioctl_device_feature()'s own checks, before any feature runs: argsz
 * below the header, unknown flag bits, and GET with SET without PROBE are
 * EINVAL. `argsz` is the ioctl's (header included); `payload` the bytes the
 * caller put after the header.
 */
export function parseFeatureCall(flags: number, argsz: number, payload: Uint8Array): FeatureCall {
  checkU32(flags, 'feature flags');
  checkU32(argsz, 'argsz');
  if (argsz < VFIO_DEVICE_FEATURE_MINSZ) {
    throw errno('EINVAL', `argsz ${argsz} is below the ${VFIO_DEVICE_FEATURE_MINSZ}-byte struct vfio_device_feature`);
  }
  const known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_PROBE;
  if ((flags & ~known) !== 0) {
    throw errno('EINVAL', `feature flags ${hex(flags >>> 0)} have unknown bits ${hex((flags & ~known) >>> 0)}`);
  }
  if ((flags & VFIO_DEVICE_FEATURE_PROBE) === 0 && (flags & VFIO_DEVICE_FEATURE_SET) !== 0 && (flags & VFIO_DEVICE_FEATURE_GET) !== 0) {
    throw errno('EINVAL', 'GET and SET are mutually exclusive except with PROBE');
  }
  const dataSize = argsz - VFIO_DEVICE_FEATURE_MINSZ;
  return { flags, argsz: dataSize, data: new UserBuffer(payload, dataSize) };
}

/**
 * vfio_check_feature() (include/linux/vfio.h): 'probe' when the caller only
 * asks whether the operation is supported (return 0), 'run' when it should
 * go ahead (return 1). An operation the feature does not support, neither
 * GET nor SET without PROBE, or argsz below the feature's struct is EINVAL.
 */
export function checkFeature(call: FeatureCall, supportedOps: number, minsz: number, what: string): 'probe' | 'run' {
  const ops = call.flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);
  if ((ops & ~supportedOps) !== 0) {
    throw errno('EINVAL', `${what} does not support ${(ops & ~supportedOps) === VFIO_DEVICE_FEATURE_SET ? 'SET' : 'GET'}`);
  }
  if ((call.flags & VFIO_DEVICE_FEATURE_PROBE) !== 0) {
    return 'probe';
  }
  if (ops === 0) {
    throw errno('EINVAL', `${what}: without PROBE one of GET or SET must be requested`);
  }
  if (call.argsz < minsz) {
    throw errno('EINVAL', `${what}: argsz leaves ${call.argsz} bytes for a ${minsz}-byte argument`);
  }
  return 'run';
}
