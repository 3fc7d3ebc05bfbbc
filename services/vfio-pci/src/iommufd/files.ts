import type { VfioDmaBuf } from '../dma-buf/vfio-dma-buf';

/** What iommufd needs of a vfio device: its function, and whether it is still there. */
export interface BindableDevice {
  readonly bdf: string;
  /** False once the function went away. */
  readonly registered: boolean;
}

/** A vfio device file an ioctl came in on. */
export interface DeviceFile {
  readonly handle: string;
  readonly device: BindableDevice;
}

/** What an fd of the caller names, as far as iommufd cares. */
export type OpenFile =
  | { readonly kind: 'iommufd'; readonly handle: string }
  | { readonly kind: 'vfio-device'; readonly file: DeviceFile }
  /** One of vfio-pci's dma-bufs; undefined if an earlier vfio-pci exported it (revoked for good since). */
  | { readonly kind: 'vfio-dma-buf'; readonly buffer: VfioDmaBuf | undefined }
  /** A dma-buf of another exporter (the system heap). */
  | { readonly kind: 'dma-buf' }
  /** Any other file. */
  | { readonly kind: 'file' };

/** The file layer as iommufd uses it: vfio-pci's files in the registry. */
export interface IommufdFiles {
  /** A new file of vfio-pci's with `handle` in the fd table of `pid`: its fd. */
  createFile(pid: number, handle: string): Promise<number>;
  /** What `fd` of `pid` names: EBADF if `pid` does not hold it. */
  fileAt(pid: number, fd: number): Promise<OpenFile>;
}
