import type { TlsConfig } from '@p2p/auth';
import { pci } from '@p2p/proto';
import { connectPeer, type Peer } from '@p2p/rpc';
import type { BarExtent, BarKind, ConfigWidth, MmioWidth, PciFunctionInfo, PciPort, PowerState } from '../ports/pci-port';

const BAR_KINDS: Partial<Record<pci.BarKind, BarKind>> = {
  [pci.BarKind.BAR_KIND_REGISTERS]: 'registers',
  [pci.BarKind.BAR_KIND_MEMORY]: 'memory',
  [pci.BarKind.BAR_KIND_IO]: 'io',
  [pci.BarKind.BAR_KIND_ROM]: 'rom',
};

/** The PCI core's view of pci-emu: what vfio-pci does to the hardware, over gRPC. */
export class PciEmuPort implements PciPort {
  readonly #peer: Peer<typeof pci.PciEmuServiceDefinition>;

  /** @param platformToken pci-emu's raw access is the platform's: proven on every call. */
  constructor(address: string, platformToken: string, tls: TlsConfig) {
    this.#peer = connectPeer(pci.PciEmuServiceDefinition, address, { name: 'pci-emu', tls, token: platformToken });
  }

  get #pci(): Peer<typeof pci.PciEmuServiceDefinition>['client'] {
    return this.#peer.client;
  }

  async listFunctions(): Promise<readonly string[]> {
    const { functions } = await this.#pci.listFunctions({});
    return functions.map((f) => f.bdf);
  }

  async functionInfo(bdf: string): Promise<PciFunctionInfo> {
    const { function: fn } = await this.#pci.getFunction({ bdf });
    if (!fn) throw new Error(`pci-emu returned no function for ${bdf}`);
    return {
      bdf: fn.bdf,
      bars: fn.bars.map((bar) => ({
        index: bar.index,
        size: bar.size,
        is64Bit: bar.is64bit,
        prefetchable: bar.prefetchable,
        kind: BAR_KINDS[bar.kind] ?? 'memory',
        busAddress: bar.busAddress,
        ...(bar.window !== undefined ? { window: { offset: bar.window.offset, length: bar.window.length } } : {}),
      })),
      memoryEnabled: fn.memoryEnabled,
      powerState: fn.powerState === pci.PowerState.POWER_STATE_D3HOT ? 'D3hot' : 'D0',
      present: fn.present,
    };
  }

  async configRead(bdf: string, offset: number, width: ConfigWidth): Promise<number> {
    return (await this.#pci.configRead({ bdf, offset, width })).value;
  }

  async configWrite(bdf: string, offset: number, width: ConfigWidth, value: number): Promise<void> {
    await this.#pci.configWrite({ bdf, offset, width, value, hardware: true });
  }

  async mmioRead(bdf: string, bar: number, offset: number, width: MmioWidth): Promise<{ value: bigint; decoded: boolean }> {
    const { value, decoded } = await this.#pci.mmioRead({ bdf, bar, offset: BigInt(offset), width });
    return { value, decoded };
  }

  async mmioWrite(bdf: string, bar: number, offset: number, width: MmioWidth, value: bigint): Promise<boolean> {
    return (await this.#pci.mmioWrite({ bdf, bar, offset: BigInt(offset), width, value })).decoded;
  }

  async bulkRead(bdf: string, bar: number, offset: number, length: number): Promise<Uint8Array> {
    const response = await this.#pci.bulkRead({ bdf, bar, offset: BigInt(offset), length: BigInt(length) });
    return response.data;
  }

  async bulkWrite(bdf: string, bar: number, offset: number, data: Uint8Array): Promise<void> {
    // A view of the caller's bytes: Buffer.from(data) would copy them.
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.#pci.bulkWrite({ bdf, bar, offset: BigInt(offset), data: bytes });
  }

  async functionLevelReset(bdf: string): Promise<void> {
    await this.#pci.functionLevelReset({ bdf });
  }

  async resetFunction(bdf: string): Promise<void> {
    await this.#pci.resetFunction({ bdf });
  }

  async setPowerState(bdf: string, state: PowerState): Promise<void> {
    const wire = state === 'D3hot' ? pci.PowerState.POWER_STATE_D3HOT : pci.PowerState.POWER_STATE_D0;
    await this.#pci.setPowerState({ bdf, state: wire });
  }

  async barExtents(bdf: string, bar: number, offset: number, length: number): Promise<readonly BarExtent[]> {
    const response = await this.#pci.getBarSegments({ bdf, bar, offset: BigInt(offset), length: BigInt(length) });
    return response.extents.map((e) => ({ segment: e.segment, segmentOffset: Number(e.offset), length: Number(e.length) }));
  }

  async relocateBar(bdf: string, bar: number): Promise<void> {
    await this.#pci.relocateBar({ bdf, bar });
  }

  /** pci-emu's hot-unplug events, for vfio_pci_remove()'s revoke; `onEnd` runs once, unless cancelled. */
  watchUnplugs(onUnplug: (bdf: string) => void, onEnd: (error?: Error) => void): () => void {
    const cancel = new AbortController();
    void (async () => {
      try {
        for await (const event of this.#pci.watchEvents({ bdfs: [] }, { signal: cancel.signal })) {
          if (event.event?.$case === 'unplugged') onUnplug(event.bdf);
        }
        if (!cancel.signal.aborted) onEnd();
      } catch (error) {
        if (!cancel.signal.aborted) onEnd(error instanceof Error ? error : new Error(String(error)));
      }
    })();
    return () => cancel.abort();
  }

  close(): void {
    this.#peer.close();
  }
}
