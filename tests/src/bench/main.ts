import Table from 'cli-table3';
import { benchIommu } from './iommu.bench';
import { benchWriteNotices } from './notices.bench';
import { benchNvme } from './nvme.bench';
import { benchPciEmu } from './pci-emu.bench';
import { benchPostPaths } from './post-paths.bench';
import { benchRdma } from './rdma.bench';
import { benchRegistry } from './registry.bench';
import { benchScale } from './scale.bench';
import { benchVfioPci } from './vfio-pci.bench';
import { benchWire } from './wire.bench';

/**
 * `npm run bench`: every figure is printed beside a baseline measured in the
 * same run on the same machine, so ratios (not absolute numbers) are what
 * carries from one machine to another.
 */
async function main(): Promise<void> {
  const rows = new Table({ head: ['measure', 'result', 'detail'], style: { head: [], border: [] } });
  const ratios: string[] = [];
  // `npm run bench -- registry` runs only the sections whose name matches.
  const only = process.argv[2];
  if (!only || 'pci-emu'.includes(only)) await benchPciEmu(rows, ratios);
  if (!only || 'registry'.includes(only)) await benchRegistry(rows);
  if (!only || 'vfio-pci'.includes(only)) await benchVfioPci(rows);
  if (!only || 'notices'.includes(only)) await benchWriteNotices(rows);
  const tables: string[] = [];
  if (!only || 'iommu'.includes(only)) await benchIommu(tables);
  // The two post paths side by side (`npm run bench -- post-paths` for them alone), then perftest's tables.
  if (!only || 'rdma-nic'.includes(only) || 'post-paths'.includes(only)) await benchPostPaths(tables);
  if (!only || 'rdma-nic'.includes(only)) await benchRdma(tables);
  if (!only || 'nvme'.includes(only)) await benchNvme(tables);
  // Between hosts that share no tmpfs (`npm run bench -- wire`).
  if (!only || 'wire'.includes(only)) await benchWire(tables);
  // Many hosts (`npm run bench -- scale [--hosts 2,4,8,16] [--seconds 3]`): named only, not in the default run (some 80 processes, minutes).
  if (only === 'scale') await benchScale(tables, process.argv.slice(3));
  if (rows.length > 0) console.log(rows.toString());
  for (const line of ratios) console.log(line);
  for (const block of tables) console.log(block);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
