import { errno } from '@p2p/errno';
import { DEVICE_LIMITS } from '../nic';
import { MAX_RD_ATOMIC, PORT_NUM } from '../qp/qp-attr';
import { MAX_MSG_SZ } from '../transport/requester';

/** What pci-emu says of the claimed function. */
export interface NicFunction {
  /** Canonical "DDDD:BB:DD.F". */
  readonly bdf: string;
  readonly vendorId: number;
  readonly deviceId: number;
}

/** struct ibv_device_attr, the fields the model reports, plus the device's name and BDF. */
export interface DeviceAttr {
  readonly bdf: string;
  readonly name: string;
  readonly nodeGuid: bigint;
  readonly fwVer: string;
  readonly vendorId: number;
  readonly vendorPartId: number;
  readonly maxMrSize: bigint;
  readonly maxQp: number;
  readonly maxQpWr: number;
  readonly maxSge: number;
  readonly maxCq: number;
  readonly maxCqe: number;
  readonly maxMr: number;
  readonly maxPd: number;
  readonly maxQpRdAtom: number;
  readonly physPortCnt: number;
  readonly atomicCap: number;
}

/** struct ibv_port_attr of the one port. */
export interface PortAttr {
  /** IBV_PORT_ACTIVE. */
  readonly state: number;
  /** enum ibv_mtu. */
  readonly activeMtu: number;
  readonly maxMtu: number;
  readonly maxMsgSz: number;
  /** IBV_LINK_LAYER_ETHERNET. */
  readonly linkLayer: number;
  readonly gidTblLen: number;
}

/** mlx5's object limits, 1 << log_max_cq, log_max_mkey and log_max_pd (all 24). */
const MAX_OBJECTS = 1 << 24;
const IBV_ATOMIC_HCA = 1;
const IBV_PORT_ACTIVE = 4;
const IBV_MTU_4096 = 5;
const IBV_LINK_LAYER_ETHERNET = 2;
/** Mellanox's OUI, the top 24 bits of its node GUIDs. */
const OUI_GUID = 0x0002c9n << 40n;

const BDF = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/;

/**
 * The device attributes of the NIC on `fn`. The name is the one rdma-core's
 * udev rule gives a RoCE device by its PCI path (rdma_rename's NAME_PCI:
 * "rocep<bus>s<slot>f<function>", decimal, "P<domain>" first when the
 * domain is not 0), and the node GUID is Mellanox's OUI over the BDF, unique
 * per function as a GUID must be.
 */
export function deviceAttr(fn: NicFunction, fwVer: string): DeviceAttr {
  const match = BDF.exec(fn.bdf);
  if (match === null) throw errno('EINVAL', `${fn.bdf} is not a canonical BDF`);
  const [domain, bus, slot, func] = match.slice(1).map((part) => parseInt(part, 16)) as [number, number, number, number];
  return {
    bdf: fn.bdf,
    name: `roce${domain === 0 ? '' : `P${domain}`}p${bus}s${slot}f${func}`,
    nodeGuid: OUI_GUID | BigInt((domain << 16) | (bus << 8) | (slot << 3) | func),
    fwVer,
    vendorId: fn.vendorId,
    vendorPartId: fn.deviceId,
    maxMrSize: BigInt(DEVICE_LIMITS.maxMrSize),
    maxQp: DEVICE_LIMITS.maxQp,
    maxQpWr: DEVICE_LIMITS.maxQpWr,
    maxSge: DEVICE_LIMITS.maxSge,
    maxCq: MAX_OBJECTS,
    maxCqe: DEVICE_LIMITS.maxCqe,
    maxMr: MAX_OBJECTS,
    maxPd: MAX_OBJECTS,
    maxQpRdAtom: MAX_RD_ATOMIC,
    physPortCnt: 1,
    atomicCap: IBV_ATOMIC_HCA,
  };
}

/** ibv_query_port(): EINVAL for a port the device does not have (rdma_is_port_valid()). */
export function portAttr(portNum: number): PortAttr {
  if (portNum !== PORT_NUM) throw errno('EINVAL', `the device has port ${PORT_NUM} only, not ${portNum}`);
  return {
    state: IBV_PORT_ACTIVE,
    activeMtu: IBV_MTU_4096,
    maxMtu: IBV_MTU_4096,
    maxMsgSz: MAX_MSG_SZ,
    linkLayer: IBV_LINK_LAYER_ETHERNET,
    gidTblLen: 1,
  };
}
