import type { Clients } from '../clients';
import { fromPciEvent, fromRegistryEvent, type ServiceEvent } from './service-event';

export interface EventSourceOptions {
  /** pci-emu's NVMe controller events too (several per I/O). */
  readonly nvme: boolean;
  /** Ends every stream. */
  readonly signal: AbortSignal;
  readonly onEvent: (event: ServiceEvent) => void;
  /** A service's stream is live: its server has subscribed (the stream's headers came). */
  readonly onLive: (service: string) => void;
  /** A service's stream failed (not when `signal` ended it). */
  readonly onError: (service: string, error: unknown) => void;
  /** Only this service's stream (to follow each one again on its own after it failed). */
  readonly only?: 'pci-emu' | 'dmabuf-registry';
}

/**
 * Streams the events of every service that has an event stream, pci-emu's
 * and the registry's, until `signal` aborts; resolves with the services
 * whose stream failed. vfio-pci has none: its config writes and resets show
 * in pci-emu's events, its exports and revokes in the registry's. The NICs'
 * async events belong to a verbs context (ibv_get_async_event()), so a
 * watch that has none cannot see them.
 */
export async function streamServiceEvents(clients: Clients, options: EventSourceOptions): Promise<string[]> {
  const { signal } = options;
  const failed: string[] = [];
  const follow = async <Response>(service: string, open: (onHeader: () => void) => AsyncIterable<Response>, convert: (response: Response) => ServiceEvent): Promise<void> => {
    try {
      for await (const response of open(() => options.onLive(service))) options.onEvent(convert(response));
    } catch (error) {
      if (signal.aborted) return;
      failed.push(service);
      options.onError(service, error);
    }
  };
  await Promise.all([
    options.only === 'dmabuf-registry' ? undefined : follow('pci-emu', (onHeader) => clients.pci.watchEvents({ bdfs: [], nvme: options.nvme }, { signal, onHeader }), (r) => fromPciEvent('pci-emu', r)),
    options.only === 'pci-emu' ? undefined : follow('dmabuf-registry', (onHeader) => clients.registry.watchEvents({}, { signal, onHeader }), (r) => fromRegistryEvent('dmabuf-registry', r)),
  ]);
  return failed;
}
