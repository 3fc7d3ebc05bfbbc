import { errno } from '@p2p/errno';
import { cleanupDmaBufs, moveDmaBufs } from '../dma-buf/dma-buf-moves';
import type { RevokeListener, RevokeTrigger } from '../dma-buf/revoke-trigger';
import type { VfioDmaBuf } from '../dma-buf/vfio-dma-buf';
import type { DmaBufPort } from '../ports/dma-buf-port';
import type { PciBar, PciPort } from '../ports/pci-port';
import type { VfioPciVariants } from '../variants';
import type { ConfigLayout } from './config-layout';
import { disableDevice, enableDevice } from './enable-disable';
import { LOW_POWER_OFF, type LowPowerState } from './low-power';
import { MemoryLock } from './memory-lock';
import type { SavedState } from './saved-state';
import { VirtualBars } from './virtual-bars';

/** Where the exporter ops find a buffer by its handle, from the moment it is being exported. */
export interface DmaBufDirectory {
  /** A new handle for a buffer of `bdf`. */
  handleFor(bdf: string): string;
  add(buffer: VfioDmaBuf): void;
  remove(buffer: VfioDmaBuf): void;
}

export interface CoreContext {
  readonly pci: PciPort;
  readonly dmaBufs: DmaBufPort;
  readonly directory: DmaBufDirectory;
  /** Told after each revoke that revoked any buffer: for /metrics. */
  readonly revoked: RevokeListener;
}

/**
 * struct vfio_pci_core_device: one function bound to vfio-pci, from bind to
 * unbind. Holds what the kernel keeps per device (open count and owner, the
 * dma-buf list, memory_lock, vconfig's BARs, pm_save, the low-power state)
 * and the helpers the ioctl paths share. Ioctls take memory_lock themselves;
 * the helpers here expect it held.
 */
export class VfioPciCore {
  readonly memoryLock = new MemoryLock();
  /** vdev->dmabufs, in export order. */
  readonly dmaBufs = new Set<VfioDmaBuf>();
  readonly virtualBars: VirtualBars;
  /** vdev->pm_save: state saved by vfio_pci_set_power_state() on the way to D3hot. */
  pmSave: SavedState | undefined;
  lowPower: LowPowerState = LOW_POWER_OFF;
  #registered = true;
  #openCount = 0;
  #ownerPid: number | undefined;

  constructor(
    readonly bdf: string,
    /** BARs 0-5 and the ROM, as probed. */
    readonly bars: readonly PciBar[],
    readonly layout: ConfigLayout,
    readonly variants: VfioPciVariants,
    readonly context: CoreContext,
  ) {
    this.virtualBars = new VirtualBars(bars);
  }

  get pci(): PciPort {
    return this.context.pci;
  }

  /** The vfio_device registration can still be taken (false once the function went away). */
  get registered(): boolean {
    return this.#registered;
  }

  get openCount(): number {
    return this.#openCount;
  }

  /** The process that owns the device while it is open. */
  get ownerPid(): number | undefined {
    return this.#ownerPid;
  }

  /** Any of its buffers is pinned (the pin variant). */
  get pinned(): boolean {
    return [...this.dmaBufs].some((buffer) => buffer.pins > 0);
  }

  /** __vfio_pci_memory_enabled(): PCI_COMMAND_MEMORY set and the function in D0. */
  async memoryEnabled(): Promise<boolean> {
    return (await this.pci.functionInfo(this.bdf)).memoryEnabled;
  }

  /**
   * vfio_pci_dma_buf_move(vdev, true), because of `trigger`. The buffers it
   * revoked are reported even when the move fails for one of them (the
   * others stay revoked).
   */
  async revoke(trigger: RevokeTrigger): Promise<void> {
    const live = [...this.dmaBufs].filter((buffer) => !buffer.revoked);
    try {
      await moveDmaBufs(this.dmaBufs, this.context.dmaBufs, true);
    } finally {
      this.#reportRevoke(trigger, live.filter((buffer) => buffer.revoked).length);
    }
  }

  /** vfio_pci_dma_buf_cleanup(): every buffer on the list revoked for good, at the last close or when the function went away. */
  async revokeForGood(trigger: 'close' | 'remove'): Promise<void> {
    const leaving = this.dmaBufs.size;
    try {
      await cleanupDmaBufs(this.dmaBufs, this.context.dmaBufs);
    } finally {
      this.#reportRevoke(trigger, leaving);
    }
  }

  #reportRevoke(trigger: RevokeTrigger, buffers: number): void {
    if (buffers > 0) this.context.revoked({ bdf: this.bdf, trigger, buffers });
  }

  /** if (__vfio_pci_memory_enabled(vdev)) vfio_pci_dma_buf_move(vdev, false). */
  async unrevokeIfEnabled(): Promise<void> {
    if (await this.memoryEnabled()) {
      await moveDmaBufs(this.dmaBufs, this.context.dmaBufs, false);
    }
  }

  /**
   * vfio_device_open(): one owner at a time (EBUSY for another process),
   * ENODEV once the device is going away. The first open enables the device;
   * `install` puts the file in the caller's fd table, and the open counts
   * only if it succeeds.
   */
  async open<T>(pid: number, install: () => Promise<T>): Promise<T> {
    return this.memoryLock.run(async () => {
      if (!this.#registered) {
        throw errno('ENODEV', `${this.bdf} is going away`);
      }
      if (this.#openCount > 0 && this.#ownerPid !== pid) {
        throw errno('EBUSY', `${this.bdf} is open by pid ${this.#ownerPid}`);
      }
      const first = this.#openCount === 0;
      if (first) await enableDevice(this);
      try {
        const result = await install();
        this.#openCount++;
        this.#ownerPid = pid;
        return result;
      } catch (error) {
        if (first) await disableDevice(this);
        throw error;
      }
    });
  }

  /** vfio_device_close(): the last close disables the device (vfio_pci_core_close_device()). */
  async close(): Promise<void> {
    await this.memoryLock.run(async () => {
      this.#openCount--;
      if (this.#openCount > 0) return;
      this.#ownerPid = undefined;
      await disableDevice(this);
    });
  }

  /**
   * Unbind (vfio_unregister_group_dev() on the driver's remove): EBUSY while
   * the device is open (the model does not wait for the release); otherwise
   * the registration is dropped and nothing can open it any more.
   */
  async unbind(): Promise<void> {
    await this.memoryLock.run(async () => {
      if (this.#openCount > 0) {
        throw errno('EBUSY', `${this.bdf} is open by pid ${this.#ownerPid}`);
      }
      this.#registered = false;
    });
  }

  /**
   * The function went away (surprise removal, then the driver's remove): the
   * registration is dropped, so no new dma-buf can be exported and nobody can
   * open it, and every buffer is revoked for good at once. An open device
   * stays until its last close.
   */
  async goAway(): Promise<void> {
    await this.memoryLock.run(async () => {
      this.#registered = false;
      await this.revokeForGood('remove');
    });
  }
}
