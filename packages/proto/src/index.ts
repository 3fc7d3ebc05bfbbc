import * as path from 'node:path';

export * as pci from './gen/p2p/pci/v1/pci';
export * as vfio from './gen/p2p/vfio/v1/vfio';
export * as iommufd from './gen/p2p/vfio/v1/iommufd';
export * as dmabuf from './gen/p2p/dmabuf/v1/dmabuf';
export * as rdma from './gen/p2p/rdma/v1/rdma';
export * as fault from './gen/p2p/fault/v1/fault';
export * as rpcStatus from './gen/google/rpc/status';
export * as rpcErrorDetails from './gen/google/rpc/error_details';
export * as protobufAny from './gen/google/protobuf/any';

/** The buf module's root: the .proto sources that reflection serves. */
export const PROTO_ROOT = path.resolve(__dirname, '..', '..', '..', 'proto');

/** The .proto file of each package, relative to PROTO_ROOT. */
export const PROTO_FILES = {
  pci: 'p2p/pci/v1/pci.proto',
  vfio: 'p2p/vfio/v1/vfio.proto',
  iommufd: 'p2p/vfio/v1/iommufd.proto',
  dmabuf: 'p2p/dmabuf/v1/dmabuf.proto',
  rdma: 'p2p/rdma/v1/rdma.proto',
  fault: 'p2p/fault/v1/fault.proto',
} as const;
