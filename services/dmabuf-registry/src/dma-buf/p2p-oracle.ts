/** enum pci_p2pdma_map_type, less UNKNOWN (the answer is always known here). */
export type P2pMapType = 'BUS_ADDR' | 'THRU_HOST_BRIDGE' | 'NOT_SUPPORTED';

/** How a mapped importer reaches the memory: system memory through the IOMMU, or a peer BAR. */
export type DmaMapType = 'HOST_MEMORY' | Exclude<P2pMapType, 'NOT_SUPPORTED'>;

/**
 * pci_p2pdma_map_type() for DMA from `clientBdf` to BAR memory of
 * `providerBdf` (the pci-emu service answers it from its topology). A
 * rejection (an unknown BDF, say) fails the map with its errno.
 */
export interface P2pOracle {
  mapType(providerBdf: string, clientBdf: string): Promise<P2pMapType>;
}
