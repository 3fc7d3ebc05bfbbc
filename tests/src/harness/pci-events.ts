import type { ClientReadableStream } from '@grpc/grpc-js';
import type { pci } from '@p2p/proto';

/**
 * Collects the events of a pci-emu WatchEvents stream once it is live (its
 * headers arrived), NVMe controller events too with `options.nvme`;
 * `take(n)` waits up to 5 s for n events and ends the stream.
 */
export async function watchPciEvents(
  client: pci.PciEmuServiceClient,
  bdfs: string[],
  options: { nvme?: boolean } = {},
): Promise<{ take(n: number): Promise<pci.WatchEventsResponse[]> }> {
  const stream: ClientReadableStream<pci.WatchEventsResponse> = client.watchEvents({ bdfs, nvme: options.nvme ?? false });
  await new Promise((resolve) => stream.once('metadata', resolve));
  const seen: pci.WatchEventsResponse[] = [];
  stream.on('data', (event: pci.WatchEventsResponse) => seen.push(event));
  stream.on('error', () => undefined);
  return {
    take: async (n) => {
      const deadline = Date.now() + 5000;
      while (seen.length < n && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      stream.cancel();
      return seen.slice(0, n);
    },
  };
}
