/**
 * What made vfio-pci revoke a device's dma-bufs: the path in
 * drivers/vfio/pci that calls vfio_pci_dma_buf_move(vdev, true) or
 * vfio_pci_dma_buf_cleanup().
 *
 * - mem-clear: a PCI_COMMAND write clearing MEM (vfio_basic_config_write())
 * - d3hot: a PMCSR write to D3hot (vfio_pm_config_write())
 * - flr: DevCtl's BCR_FLR written (vfio_exp_config_write())
 * - reset: VFIO_DEVICE_RESET (vfio_pci_ioctl_reset())
 * - hot-reset: VFIO_DEVICE_PCI_HOT_RESET (vfio_pci_dev_set_hot_reset())
 * - low-power: VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY (vfio_pci_runtime_pm_entry())
 * - close: the device's last close (vfio_pci_core_close_device()), for good
 * - remove: the function went away (vfio_pci_remove()), for good
 */
export type RevokeTrigger = 'mem-clear' | 'd3hot' | 'flr' | 'reset' | 'hot-reset' | 'low-power' | 'close' | 'remove';

/** `buffers` dma-bufs of `bdf` revoked by one `trigger`. */
export interface DmaBufRevoke {
  readonly bdf: string;
  readonly trigger: RevokeTrigger;
  readonly buffers: number;
}

export type RevokeListener = (revoke: DmaBufRevoke) => void;
