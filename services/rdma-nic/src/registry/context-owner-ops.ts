import type { OwnerCallInfo, OwnerOps } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import type { RdmaDevice } from '../context/rdma-device';

/**
 * The NIC's side of its files in the registry. A verbs context is a plain
 * file, not a dma-buf: its ops are release (ib_uverbs_close() ->
 * ib_uverbs_cleanup_ufile()), when the last fd is closed or its process
 * exits, and fdClosed for the close of any other fd of it, so the NIC's
 * memory of which fd names which context stays true. The dma-buf ops are
 * refused, as the registry never calls them for a file that exports nothing.
 */
export function contextOwnerOps(device: () => RdmaDevice): OwnerOps {
  const notADmaBuf = (call: OwnerCallInfo): never => {
    throw errno('EINVAL', `file ${call.fileId} (${call.handle ?? 'no handle'}) is a verbs context, not a dma-buf`);
  };
  return {
    map: notADmaBuf,
    fence: notADmaBuf,
    release: async (call) => {
      if (call.handle === undefined || call.handle === '') throw errno('EINVAL', `release of file ${call.fileId} carries no handle`);
      await device().release(call.handle);
    },
    fdClosed: (call) => device().fdClosed(call.pid, call.fd),
  };
}
