import type { DmaBufImporter, RegistrySession } from '@p2p/dmabuf-client';
import { errno } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import type { WriteNoticeClient } from '@p2p/shm';
import type { DmaBufMemory, MemoryWindow } from '../memory/memory';
import { IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_MW_BIND, IBV_ACCESS_REMOTE_ATOMIC, IBV_ACCESS_REMOTE_WRITE } from '../verbs/access-flags';
import type { ImportedMemory, MemoryImportPort } from '../context/ports';
import { ImportGrant, ImporterDmaBuf, ImporterWindow } from './importer-memory';
import { peerError } from './peer-error';
import type { RegistryFiles } from './registry-files';

/** The registry's owner name for system-heap buffers (dmabuf-registry's SYSTEM_HEAP). */
const SYSTEM_HEAP = 'system-heap';
const O_ACCMODE = 3;
const O_RDONLY = 0;
/** ib_access_writable(): the access flags for which ib_umem_get() pins with FOLL_WRITE. */
const WRITABLE_ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_MW_BIND;

/**
 * MR memory from the registry: every import is an attach by this NIC's
 * registry session with the NIC's BDF as the importing device, so the
 * registry decides from pci-emu's topology how the NIC reaches the memory
 * (peer to peer through a switch, through the host bridge, or not at all).
 * Writes into dma-buf MRs of BAR memory go out as write notices on `notices`.
 */
export class MemoryImports implements MemoryImportPort {
  readonly #session: RegistrySession;
  readonly #files: RegistryFiles;
  readonly #bdf: string;
  readonly #notices: WriteNoticeClient;

  constructor(session: RegistrySession, files: RegistryFiles, bdf: string, notices: WriteNoticeClient) {
    this.#session = session;
    this.#files = files;
    this.#bdf = bdf;
    this.#notices = notices;
  }

  /**
   * ib_umem_get() on host memory: only a system-heap buffer is host memory a
   * NIC can pin (device memory is VM_IO | VM_PFNMAP, which
   * pin_user_pages_fast() refuses with EFAULT: register it with
   * ibv_reg_dmabuf_mr), and the range must lie within it (EFAULT, as for
   * pages that are not mapped); writable access needs a buffer the process
   * may write (FOLL_WRITE on a read-only mapping is EFAULT too). Mapped
   * now: pinning is mapping.
   */
  async hostMemory(pid: number, heapFd: number, offset: number, length: number, access: number): Promise<ImportedMemory<MemoryWindow>> {
    const file = await this.#files.resolveFd(pid, heapFd);
    if (file.kind !== dmabuf.FileKind.FILE_KIND_DMA_BUF || file.owner !== SYSTEM_HEAP) {
      throw errno('EFAULT', `fd ${heapFd} of pid ${pid} is not host memory (a system-heap dma-buf) but a file of ${file.owner}; register device memory with ibv_reg_dmabuf_mr`);
    }
    if ((access & WRITABLE_ACCESS) !== 0 && (file.openFlags & O_ACCMODE) === O_RDONLY) {
      throw errno('EFAULT', `fd ${heapFd} of pid ${pid} is open read-only, and access 0x${access.toString(16)} asks the NIC to write it`);
    }
    const importer = await this.#import(pid, heapFd);
    try {
      if (offset + length > importer.size) {
        throw errno('EFAULT', `[${offset}, ${offset + length}) runs past the ${importer.size}-byte buffer behind fd ${heapFd}`);
      }
      const mapping = await importer.map();
      if (mapping.transport !== dmabuf.Transport.TRANSPORT_SHARED_MEMORY) {
        throw errno('EOPNOTSUPP', `this NIC shares no tmpfs with the registry's system heap, and it DMAs only between shared-memory mappings (set P2P_SHM_DIR to the registry's segment directory)`);
      }
    } catch (error) {
      // The registration's own error is the one to report; a failed detach leaves nothing mapped either way.
      await importer.detach().catch(() => undefined);
      throw error;
    }
    const grant = new ImportGrant(pid, heapFd, importer, this.#bdf);
    return { memory: new ImporterWindow(importer, offset, length, grant), writable: (file.openFlags & O_ACCMODE) !== O_RDONLY, detach: () => released(grant, importer) };
  }

  async dmaBuf(pid: number, fd: number, onMoveNotify: () => void): Promise<ImportedMemory<DmaBufMemory>> {
    const importer = await this.#import(pid, fd, onMoveNotify);
    const grant = new ImportGrant(pid, fd, importer, this.#bdf);
    return { memory: new ImporterDmaBuf(importer, this.#notices, grant), detach: () => released(grant, importer) };
  }

  /** ib_umem_dmabuf_get(): a dynamic, peer2peer attach with move_notify. Fails with the registry's errno (EBADF, ENODEV, EOPNOTSUPP). */
  async #import(pid: number, fd: number, onMoveNotify?: () => void): Promise<DmaBufImporter> {
    try {
      return await this.#session.importDmaBuf({ fd, holderPid: pid, importerBdf: this.#bdf, peer2peer: true, onMoveNotify });
    } catch (error) {
      throw peerError(error, `attach of fd ${fd} of pid ${pid}`);
    }
  }
}

/** ib_umem_release(): peers given the memory lose it first (their grants are withdrawn), then the attachment goes. */
function released(grant: ImportGrant, importer: DmaBufImporter): Promise<void> {
  grant.release();
  return importer.detach();
}
