import type { ClientReadableStream } from '@grpc/grpc-js';
import { bearerInterceptor, channelCredentials, type TlsConfig } from '@p2p/auth';
import { pci } from '@p2p/proto';
import type { BarExtent, BarKind, ConfigWidth, MmioWidth, PciFunctionInfo, PciPort, PowerState } from '../ports/pci-port';
import { call } from './grpc-call';

const BAR_KINDS: Partial<Record<pci.BarKind, BarKind>> = {
  [pci.BarKind.BAR_KIND_REGISTERS]: 'registers',
  [pci.BarKind.BAR_KIND_MEMORY]: 'memory',
  [pci.BarKind.BAR_KIND_IO]: 'io',
  [pci.BarKind.BAR_KIND_ROM]: 'rom',
};

/** The PCI core's view of pci-emu: what vfio-pci does to the hardware, over gRPC. */
export class PciEmuPort implements PciPort {
  readonly client: pci.PciEmuServiceClient;

  /** @param platformToken pci-emu's raw access is the platform's: proven on every call. */
  constructor(address: string, platformToken: string, tls: TlsConfig) {
    this.client = new pci.PciEmuServiceClient(address, channelCredentials(tls), { interceptors: [bearerInterceptor(platformToken)] });
  }

  async listFunctions(): Promise<readonly string[]> {
    const { functions } = await call<pci.ListFunctionsResponse>('pci-emu ListFunctions', (cb) => this.client.listFunctions({}, cb));
    return functions.map((f) => f.bdf);
  }

  async functionInfo(bdf: string): Promise<PciFunctionInfo> {
    const { function: fn } = await call<pci.GetFunctionResponse>(`pci-emu GetFunction ${bdf}`, (cb) => this.client.getFunction({ bdf }, cb));
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
      })),
      memoryEnabled: fn.memoryEnabled,
      powerState: fn.powerState === pci.PowerState.POWER_STATE_D3HOT ? 'D3hot' : 'D0',
      present: fn.present,
    };
  }

  async configRead(bdf: string, offset: number, width: ConfigWidth): Promise<number> {
    return (await call<pci.ConfigReadResponse>('pci-emu ConfigRead', (cb) => this.client.configRead({ bdf, offset, width }, cb))).value;
  }

  async configWrite(bdf: string, offset: number, width: ConfigWidth, value: number): Promise<void> {
    await call('pci-emu ConfigWrite', (cb) => this.client.configWrite({ bdf, offset, width, value, hardware: true }, cb));
  }

  async mmioRead(bdf: string, bar: number, offset: number, width: MmioWidth): Promise<bigint> {
    return (await call<pci.MmioReadResponse>('pci-emu MmioRead', (cb) => this.client.mmioRead({ bdf, bar, offset: BigInt(offset), width }, cb))).value;
  }

  async mmioWrite(bdf: string, bar: number, offset: number, width: MmioWidth, value: bigint): Promise<void> {
    await call('pci-emu MmioWrite', (cb) => this.client.mmioWrite({ bdf, bar, offset: BigInt(offset), width, value }, cb));
  }

  async bulkRead(bdf: string, bar: number, offset: number, length: number): Promise<Uint8Array> {
    const response = await call<pci.BulkReadResponse>('pci-emu BulkRead', (cb) =>
      this.client.bulkRead({ bdf, bar, offset: BigInt(offset), length: BigInt(length) }, cb),
    );
    return response.data;
  }

  async bulkWrite(bdf: string, bar: number, offset: number, data: Uint8Array): Promise<void> {
    // A view of the caller's bytes: Buffer.from(data) would copy them.
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await call('pci-emu BulkWrite', (cb) => this.client.bulkWrite({ bdf, bar, offset: BigInt(offset), data: bytes }, cb));
  }

  async functionLevelReset(bdf: string): Promise<void> {
    await call('pci-emu FunctionLevelReset', (cb) => this.client.functionLevelReset({ bdf }, cb));
  }

  async resetFunction(bdf: string): Promise<void> {
    await call('pci-emu ResetFunction', (cb) => this.client.resetFunction({ bdf }, cb));
  }

  async setPowerState(bdf: string, state: PowerState): Promise<void> {
    const wire = state === 'D3hot' ? pci.PowerState.POWER_STATE_D3HOT : pci.PowerState.POWER_STATE_D0;
    await call('pci-emu SetPowerState', (cb) => this.client.setPowerState({ bdf, state: wire }, cb));
  }

  async barExtents(bdf: string, bar: number, offset: number, length: number): Promise<readonly BarExtent[]> {
    const response = await call<pci.GetBarSegmentsResponse>('pci-emu GetBarSegments', (cb) =>
      this.client.getBarSegments({ bdf, bar, offset: BigInt(offset), length: BigInt(length) }, cb),
    );
    return response.extents.map((e) => ({ segment: e.segment, segmentOffset: Number(e.offset), length: Number(e.length) }));
  }

  async relocateBar(bdf: string, bar: number): Promise<void> {
    await call('pci-emu RelocateBar', (cb) => this.client.relocateBar({ bdf, bar }, cb));
  }

  /** pci-emu's hot-unplug events, for vfio_pci_remove()'s revoke; `onEnd` runs once, unless cancelled. */
  watchUnplugs(onUnplug: (bdf: string) => void, onEnd: (error?: Error) => void): () => void {
    const stream: ClientReadableStream<pci.WatchEventsResponse> = this.client.watchEvents({ bdfs: [] });
    stream.on('data', (event: pci.WatchEventsResponse) => {
      if (event.event?.$case === 'unplugged') onUnplug(event.bdf);
    });
    let ended = false;
    const end = (error?: Error): void => {
      if (ended) return;
      ended = true;
      onEnd(error);
    };
    stream.on('error', (error: Error) => end(error));
    stream.on('end', () => end());
    return () => {
      ended = true;
      stream.cancel();
    };
  }

  close(): void {
    this.client.close();
  }
}
