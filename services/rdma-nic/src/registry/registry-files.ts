import type { OwnerSession } from '@p2p/dmabuf-client';
import { dmabuf } from '@p2p/proto';
import type { ContextFilePort, ResolvedContextFile } from '../context/ports';

/**
 * The registry as the NIC's file layer: context files are created through
 * its owner session, and any process's fd is resolved with ResolveFd (EBADF
 * for an fd the process does not hold), as a uverbs command starts with
 * fdget() on the caller's fd.
 */
export class RegistryFiles implements ContextFilePort {
  readonly #owner: OwnerSession;

  constructor(owner: OwnerSession) {
    this.#owner = owner;
  }

  async create(pid: number, handle: string): Promise<number> {
    return (await this.#owner.createFile(pid, handle)).fd;
  }

  async resolve(pid: number, fd: number): Promise<ResolvedContextFile> {
    const file = await this.resolveFd(pid, fd);
    return { owner: file.owner, handle: file.handle, ours: file.kind === dmabuf.FileKind.FILE_KIND_OWNED && file.owner === this.#owner.name };
  }

  /** What pid's fd refers to. */
  resolveFd(pid: number, fd: number): Promise<dmabuf.ResolveFdResponse> {
    return this.#owner.resolveFd(pid, fd);
  }
}
