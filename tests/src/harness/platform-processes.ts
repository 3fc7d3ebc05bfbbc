import { freePort, type ServiceProcess, startServiceProcess } from '@p2p/testing';

/**
 * pci-emu and the registry as processes, started at once (the registry
 * reaches pci-emu lazily, for P2P distances, so it need not wait). If either
 * fails, the other is killed and the failure thrown.
 */
export async function startPlatformProcesses(env: NodeJS.ProcessEnv): Promise<{ pciEmu: ServiceProcess; registry: ServiceProcess }> {
  const pciEmuPort = await freePort();
  const started = await Promise.allSettled([
    startServiceProcess('pci-emu', 'PCI_EMU', { env, port: pciEmuPort }),
    startServiceProcess('dmabuf-registry', 'DMABUF_REGISTRY', { env: { ...env, PCI_EMU_ADDRESS: `127.0.0.1:${pciEmuPort}` } }),
  ]);
  const failure = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failure !== undefined) {
    for (const result of started) if (result.status === 'fulfilled') await result.value.stop('SIGKILL');
    throw failure.reason;
  }
  const [pciEmu, registry] = started.map((result) => (result as PromiseFulfilledResult<ServiceProcess>).value) as [ServiceProcess, ServiceProcess];
  return { pciEmu, registry };
}
