import { Counter, Gauge, type Registry } from 'prom-client';
import type { PciBus } from './bus/pci-bus';
import { nvmeDataDirection } from './devices/nvme/nvme-command';
import { nvmeOpcodeName, nvmeQueueKind, nvmeStatusName } from './devices/nvme/nvme-names';

/**
 * The NVMe controllers' metrics on /metrics: commands by opcode and status,
 * data bytes, doorbell writes by path and state changes counted from each
 * controller's events as they happen (PciBus.onNvmeEvent, which costs no
 * event on the ordered stream); queue depths read from the controllers at
 * each scrape. Opcodes and statuses carry the specification's names
 * (nvme-names.ts). Returns the unsubscribe function.
 */
export function registerNvmeMetrics(registry: Registry, bus: PciBus): () => void {
  const commands = new Counter({
    name: 'p2p_nvme_commands_total',
    help: 'NVMe commands completed, by queue (admin, io), opcode ("Read", "Create I/O SQ", else hex) and status (SUCCESS, LBA_OUT_OF_RANGE, ...)',
    labelNames: ['bdf', 'queue', 'opcode', 'status'],
    registers: [registry],
  });
  const bytes = new Counter({
    name: 'p2p_nvme_data_bytes_total',
    help: 'Data bytes the commands of I/O queues moved: read (to memory across the bus) or write (from it)',
    labelNames: ['bdf', 'direction'],
    registers: [registry],
  });
  const doorbells = new Counter({
    name: 'p2p_nvme_doorbell_writes_total',
    help: "Doorbell writes, by path (mmio: a CPU's MMIO; p2p: a bus master's write into the doorbell window) and whether the controller took them",
    labelNames: ['bdf', 'path', 'accepted'],
    registers: [registry],
  });
  const states = new Counter({
    name: 'p2p_nvme_state_changes_total',
    help: 'Controller state changes: ready (CSTS.RDY), reset, shutdown-complete (CSTS.SHST), fatal (CSTS.CFS)',
    labelNames: ['bdf', 'state'],
    registers: [registry],
  });
  new Gauge({
    name: 'p2p_nvme_queue_depth',
    help: 'Entries waiting in each queue: commands submitted and not yet fetched (sq), completions posted and not yet released by the host (cq)',
    labelNames: ['bdf', 'queue', 'qid'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { bdf, queues } of bus.nvmeQueueDepths()) {
        for (const { queue, qid, depth } of queues) this.set({ bdf, queue, qid: String(qid) }, depth);
      }
    },
  });
  return bus.onNvmeEvent((bdf, event) => {
    switch (event.kind) {
      case 'command': {
        const queue = nvmeQueueKind(event.qid);
        commands.inc({ bdf, queue, opcode: nvmeOpcodeName(queue, event.opcode), status: nvmeStatusName(event.status) });
        const direction = nvmeDataDirection(event.opcode);
        if (queue === 'io' && direction !== undefined && event.bytes > 0) {
          bytes.inc({ bdf, direction: direction === 'controller-to-host' ? 'read' : 'write' }, event.bytes);
        }
        return;
      }
      case 'doorbell':
        doorbells.inc({ bdf, path: event.path, accepted: String(event.accepted) });
        return;
      case 'state':
        states.inc({ bdf, state: event.state });
        return;
      default:
        return;
    }
  });
}
