import type { OwnerSession } from '@p2p/dmabuf-client';
import { bearerInterceptor, channelCredentials, type TlsConfig } from '@p2p/auth';
import { dmabuf } from '@p2p/proto';
import type { ContextFilePort } from '../context/ports';
import { registryCall } from './registry-call';

/**
 * The registry as the NIC's file layer: context files are created through
 * its owner session, and any process's fd is resolved with ResolveFd (EBADF
 * for an fd the process does not hold), as a uverbs command starts with
 * fdget() on the caller's fd.
 */
export class RegistryFiles implements ContextFilePort {
  readonly #client: dmabuf.DmaBufRegistryServiceClient;
  readonly #owner: OwnerSession;

  /** @param platformToken resolving another process's fd is the platform's to do. */
  constructor(address: string, owner: OwnerSession, platformToken: string, tls: TlsConfig) {
    this.#client = new dmabuf.DmaBufRegistryServiceClient(address, channelCredentials(tls), { interceptors: [bearerInterceptor(platformToken)] });
    this.#owner = owner;
  }

  async create(pid: number, handle: string): Promise<number> {
    return (await this.#owner.createFile(pid, handle)).fd;
  }

  async resolve(pid: number, fd: number): Promise<string | undefined> {
    const file = await this.resolveFd(pid, fd);
    return file.kind === dmabuf.FileKind.FILE_KIND_OWNED && file.owner === this.#owner.name ? file.handle : undefined;
  }

  /** What pid's fd refers to. */
  resolveFd(pid: number, fd: number): Promise<dmabuf.ResolveFdResponse> {
    return registryCall(`ResolveFd of fd ${fd} in pid ${pid}`, (cb) => this.#client.resolveFd({ pid, fd }, cb));
  }

  close(): void {
    this.#client.close();
  }
}
