import type { OwnerSession } from '@p2p/dmabuf-client';
import { dmabuf } from '@p2p/proto';
import type { BufferMove, CreatedFile, DmaBufPort, ExportDmaBufRequest, ExportedDmaBuf, MoveResult, ResolvedFile } from '../ports/dma-buf-port';

/**
 * The registry as vfio-pci's file layer: files and dma-bufs are created and
 * moved through its owner session; a caller's fd is resolved with ResolveFd,
 * which fails with EBADF for an fd the caller does not hold.
 */
export class RegistryPort implements DmaBufPort {
  constructor(private readonly owner: () => OwnerSession) {}

  exportDmaBuf(request: ExportDmaBufRequest): Promise<ExportedDmaBuf> {
    return this.owner().exportDmaBuf(request);
  }

  move(bufferId: bigint, revoked: boolean, permanent: boolean): Promise<MoveResult> {
    return this.owner().move(bufferId, revoked, permanent);
  }

  moveAll(moves: readonly BufferMove[]): Promise<Array<PromiseSettledResult<MoveResult>>> {
    return this.owner().moveAll(moves);
  }

  async createFile(pid: number, handle: string, openFlags: number): Promise<CreatedFile> {
    const created = await this.owner().createFile(pid, handle, openFlags);
    return { fileId: BigInt(created.fileId), fd: created.fd };
  }

  async resolveFd(pid: number, fd: number): Promise<ResolvedFile> {
    const resolved = await this.owner().resolveFd(pid, fd);
    return { owner: resolved.owner, handle: resolved.handle, kind: resolved.kind === dmabuf.FileKind.FILE_KIND_DMA_BUF ? 'dma-buf' : 'owned' };
  }
}
