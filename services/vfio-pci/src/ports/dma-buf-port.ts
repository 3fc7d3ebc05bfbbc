/**
 * What vfio-pci needs of the dma-buf core and file layer (dmabuf-registry
 * behind it, through an owner session): files in a process's fd table, dma-buf
 * export and the revoked bit. Every call may reject with an ErrnoError.
 */

/** dma_buf_export() plus dma_buf_fd() into the fd table of `pid`. */
export interface ExportDmaBufRequest {
  readonly pid: number;
  readonly size: bigint;
  readonly openFlags: number;
  /** Exported while memory decode is off: starts revoked. */
  readonly revoked: boolean;
  /** The function whose BAR the memory is (P2P eligibility). */
  readonly providerBdf: string;
  /** Static (pinning) importers may attach: the pin variant. */
  readonly allowPin: boolean;
  /** vfio_pci_dma_buf_attach() refuses importers without peer2peer. */
  readonly requirePeer2peer: true;
  /** The buffer has CPU access (dma-buf mmap): the cpu-mmap variant. */
  readonly cpuAccess: boolean;
  /** vfio-pci's name for the buffer; the exporter ops carry it back. */
  readonly handle: string;
}

export interface ExportedDmaBuf {
  readonly bufferId: bigint;
  readonly fd: number;
}

/** What a move did: move_notify calls made, and importers fenced for not acking in time. */
export interface MoveResult {
  readonly notified: number;
  readonly fenced: number;
}

export interface CreatedFile {
  readonly fileId: bigint;
  readonly fd: number;
}

/** One buffer's move in moveAll(). */
export interface BufferMove {
  readonly bufferId: bigint;
  readonly revoked: boolean;
  readonly permanent: boolean;
}

/** The file behind an fd: the service that owns it, that owner's handle for it, and whether it is a dma-buf. */
export interface ResolvedFile {
  readonly owner: string;
  readonly handle: string;
  readonly kind: 'dma-buf' | 'owned';
}

export interface DmaBufPort {
  exportDmaBuf(request: ExportDmaBufRequest): Promise<ExportedDmaBuf>;
  /**
   * Flip the buffer's revoked bit and notify its dynamic importers; resolves
   * once each acked or was fenced. `permanent`: the exporter forgets the
   * buffer for good. ENOENT for a buffer whose file is already gone.
   */
  move(bufferId: bigint, revoked: boolean, permanent: boolean): Promise<MoveResult>;
  /**
   * Several moves at once (every buffer of a device): all are under way
   * before any is awaited, so every buffer's importers are told
   * concurrently. Settles with each move's outcome, in order.
   */
  moveAll(moves: readonly BufferMove[]): Promise<Array<PromiseSettledResult<MoveResult>>>;
  /** A new file of this owner in the fd table of `pid`. */
  createFile(pid: number, handle: string, openFlags: number): Promise<CreatedFile>;
  /** EBADF unless `pid` holds `fd`. */
  resolveFd(pid: number, fd: number): Promise<ResolvedFile>;
}
