/**
 * The seed's use case: "a NVMe device will be owned by SPDK through VFIO
 * but interacting with a RDMA device. The RDMA device may directly access
 * the NVMe CMB or directly manipulate the NVMe device's doorbell using PCI
 * P2P."
 *
 * The target (host X) owns nvme1 through vfio-pci: it brings the controller
 * up, creates an I/O queue pair whose SQ and CQ live in nvme1's CMB,
 * exports the CMB and BAR0's doorbell page as dma-bufs and registers both
 * on its NIC (nic1, under nvme1's switch). From then on a remote host (Y,
 * nic0) drives the controller alone, by RDMA: it WRITEs a block into the
 * CMB, an NVMe Write command into the SQ, and the SQ tail doorbell; it
 * READs the completion from the CQ until its phase tag flips, and WRITEs
 * the CQ head doorbell. Then it reads the block back from the namespace the
 * same way (an NVMe Read into the CMB, then an RDMA READ of it). The
 * target's CPU issues no command and copies no byte: the example counts
 * the calls the target makes while the remote host works, which is none.
 *
 *   npm start                                   # in another terminal
 *   node tests/dist/examples/rdma-nvme-doorbell.js
 *
 * Addresses: DMABUF_REGISTRY_ADDRESS, VFIO_PCI_ADDRESS, RDMA_NIC_A_ADDRESS
 * (host Y's NIC) and RDMA_NIC_B_ADDRESS (host X's NIC); the defaults are
 * npm start's. The administrator's token comes from P2P_ADMIN_TOKEN or
 * `.admin-token` in the segment directory (P2P_SHM_DIR); P2P_TLS_* as for
 * the other examples.
 */
import { loadTlsConfig, readAdminToken, type TlsConfig } from '@p2p/auth';
import { RegistrySession } from '@p2p/dmabuf-client';
import { decodeNvmeCompletion, encodeNvmeCommand, NVME_CMD_READ, NVME_CMD_WRITE, NVME_CQE_SIZE, NVME_SC_SUCCESS, NVME_SQE_SIZE } from '@p2p/pci-emu';
import { iommufd, rdma, vfio } from '@p2p/proto';
import { connectPeer } from '@p2p/rpc';
import { resolveShmDir } from '@p2p/shm';
import { errnoOf } from '@p2p/status';
import { IBV_ACCESS_LOCAL_WRITE, IBV_SEND_SIGNALED, VerbsContext } from '@p2p/verbs';
import { CMB_CQ, CMB_DATA, CMB_EXPORTED, CMB_SQ, connectRcPair, cqHeadDoorbell, createCmbQueues, NVME1, openCmbTarget, registerCmbTarget, sqTailDoorbell } from '../harness/nvme-cmb-target';
import { cpuView } from '@p2p/user-driver';

const NSID = 1;
const QID = 1;
const ENTRIES = 64;
/** The block written and the block read back, in nvme1's CMB. */
const CMB_WRITE_DATA = CMB_DATA;
const CMB_READ_DATA = CMB_DATA + 0x1_0000;
const SQ_TAIL = sqTailDoorbell(QID);
const CQ_HEAD = cqHeadDoorbell(QID);
const BLOCK = 4096;
/** Host Y's staging buffer: the block, the SQE, a doorbell value, the CQE read back, the block read back. */
const Y_BLOCK = 0;
const Y_SQE = 0x1000;
const Y_DOORBELL = 0x1040;
const Y_CQE = 0x1080;
const Y_READ = 0x2000;
const Y_SIZE = 0x3000;

export interface RdmaNvmeDoorbellOptions {
  readonly registry: string;
  readonly vfioPci: string;
  readonly nicY: string;
  readonly nicX: string;
  readonly shmDir?: string;
  readonly adminToken?: string;
  readonly tls?: TlsConfig;
  readonly log?: (line: string) => void;
}

export interface RdmaNvmeDoorbellResult {
  /** The block host Y wrote. */
  readonly expected: Buffer;
  /** The block host Y read back from the namespace. */
  readonly readBack: Buffer;
  /** The two commands' completion status fields (0: success). */
  readonly statuses: readonly number[];
  /** Calls the target process made while host Y drove the controller. */
  readonly targetCalls: number;
}

/** `target`, with every method call counted in `counter.calls`. */
function counted<T extends object>(target: T, counter: { calls: number }): T {
  return new Proxy(target, {
    get(object, key) {
      // The object itself as `this`: its getters and methods reach its private fields.
      const value: unknown = Reflect.get(object, key);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        counter.calls++;
        return (value as (...a: unknown[]) => unknown).apply(object, args);
      };
    },
  });
}

const hex = (value: bigint | number): string => `0x${value.toString(16)}`;

export async function rdmaNvmeDoorbell(options: RdmaNvmeDoorbellOptions): Promise<RdmaNvmeDoorbellResult> {
  const log = options.log ?? ((): void => undefined);
  const tls = options.tls ?? loadTlsConfig();
  const target = { calls: 0 };
  const hostX = await RegistrySession.open(options.registry, { name: 'nvme-target', shmDir: options.shmDir, tls });
  const hostY = await RegistrySession.open(options.registry, { name: 'rdma-initiator', shmDir: options.shmDir, tls });
  const as = { tls, token: hostX.credential };
  const device = connectPeer(vfio.VfioPciServiceDefinition, options.vfioPci, { name: 'vfio-pci', ...as });
  const deviceIommufd = connectPeer(vfio.VfioDeviceIommufdServiceDefinition, options.vfioPci, { name: 'vfio-pci', ...as });
  const dev = connectPeer(iommufd.IommufdServiceDefinition, options.vfioPci, { name: 'vfio-pci', ...as });
  const admin = connectPeer(vfio.VfioPciServiceDefinition, options.vfioPci, { name: 'vfio-pci', tls, token: options.adminToken ?? readAdminToken(options.shmDir ?? resolveShmDir()) });
  const contexts: VerbsContext[] = [];
  try {
    await admin.client.bind({ bdf: NVME1, variants: undefined }).catch((error: unknown) => {
      if (errnoOf(error) !== 'EBUSY') throw error;
    });

    // ---- host X, the target: every call it makes is counted ----
    const clients = {
      device: counted(device.client, target),
      deviceIommufd: counted(deviceIommufd.client, target),
      iommufd: counted(dev.client, target),
    };
    const session = counted(hostX, target);
    const nvme1 = await openCmbTarget(session, clients);
    const cmb = { address: nvme1.cmbAddress };
    await createCmbQueues(session, clients, nvme1, QID, ENTRIES);
    log(`host X (pid ${hostX.pid}): nvme1 up through vfio-pci; I/O queue pair ${QID} (${ENTRIES} entries) with SQ and CQ in the CMB at ${hex(cmb.address)}`);

    const x = counted(await VerbsContext.open(options.nicX, hostX, tls), target);
    contexts.push(x);
    const xPd = await x.allocPd();
    const { cmbMr, doorbellMr } = await registerCmbTarget(x, xPd, nvme1);
    log(`host X: the CMB's first ${hex(CMB_EXPORTED)} bytes (dma-buf fd ${nvme1.cmbFd}, rkey ${hex(cmbMr.rkey)}) and BAR0's doorbell page (dma-buf fd ${nvme1.doorbellFd}, rkey ${hex(doorbellMr.rkey)}) registered on nic1`);

    // ---- host Y, the initiator: a staging buffer of its own on nic0 ----
    const y = await VerbsContext.open(options.nicY, hostY, tls);
    contexts.push(y);
    const yPd = await y.allocPd();
    const { fd: stagingFd } = await hostY.heapAllocate(Y_SIZE);
    const stagingMr = await y.regMr(yPd, { heapFd: stagingFd, length: Y_SIZE, iova: 0, access: IBV_ACCESS_LOCAL_WRITE });
    const staging = cpuView(await hostY.mmapFd(stagingFd, 0, Y_SIZE));

    // One RC QP each, connected by GID and QPN.
    const { initiator: qy } = await connectRcPair({ ctx: x, pd: xPd }, { ctx: y, pd: yPd });

    /** One RDMA WRITE or READ between host Y's staging buffer and an MR of host X, waited for. */
    const rdmaOp = async (opcode: rdma.WrOpcode, local: number, length: number, remote: number, rkey: number): Promise<void> => {
      await y.postSend(qy.qpNum, [
        { wrId: 1n, opcode, sgList: [{ addr: BigInt(local), length, lkey: stagingMr.lkey }], sendFlags: IBV_SEND_SIGNALED, immData: 0, remoteAddr: BigInt(remote), rkey, compareAdd: 0n, swap: 0n },
      ]);
      let completions: rdma.WorkCompletion[] = [];
      while (completions.length === 0) completions = await y.pollCq(qy.cq, 1);
      if (completions[0]!.status !== rdma.WcStatus.WC_STATUS_SUCCESS) throw new Error(`RDMA op ${opcode} completed with status ${completions[0]!.status}`);
    };
    const write = (local: number, length: number, remote: number, rkey: number): Promise<void> => rdmaOp(rdma.WrOpcode.WR_OPCODE_RDMA_WRITE, local, length, remote, rkey);
    const read = (local: number, length: number, remote: number, rkey: number): Promise<void> => rdmaOp(rdma.WrOpcode.WR_OPCODE_RDMA_READ, local, length, remote, rkey);

    /** One NVMe command, driven entirely by RDMA: the SQE into the CMB, the SQ tail doorbell, the CQE polled, the CQ head doorbell. */
    let slot = 0;
    const command = async (opcode: number, cmbData: number): Promise<number> => {
      encodeNvmeCommand({ opcode, commandId: slot, nsid: NSID, prp1: cmb.address + BigInt(cmbData), cdw10: 0, cdw11: 0, cdw12: BLOCK / 512 - 1 }, staging, Y_SQE);
      await write(Y_SQE, NVME_SQE_SIZE, CMB_SQ + slot * NVME_SQE_SIZE, cmbMr.rkey);
      slot++;
      staging.writeUInt32LE(slot, Y_DOORBELL);
      await write(Y_DOORBELL, 4, SQ_TAIL, doorbellMr.rkey);
      for (;;) {
        await read(Y_CQE, NVME_CQE_SIZE, CMB_CQ + (slot - 1) * NVME_CQE_SIZE, cmbMr.rkey);
        const completion = decodeNvmeCompletion(staging, Y_CQE);
        if (completion.phase) {
          staging.writeUInt32LE(slot, Y_DOORBELL);
          await write(Y_DOORBELL, 4, CQ_HEAD, doorbellMr.rkey);
          return completion.status;
        }
      }
    };

    // ---- the transfer: host X's CPU does nothing from here ----
    const before = target.calls;
    const expected = Buffer.alloc(BLOCK);
    for (let i = 0; i < BLOCK; i += 4) expected.writeUInt32LE((Math.imul(i + 1, 0x2545f491) ^ 0xfeed) >>> 0, i);
    expected.copy(staging, Y_BLOCK);
    await write(Y_BLOCK, BLOCK, CMB_WRITE_DATA, cmbMr.rkey);
    const writeStatus = await command(NVME_CMD_WRITE, CMB_WRITE_DATA);
    log(`host Y: RDMA WRITE of ${BLOCK} bytes into the CMB, an NVMe Write into the SQ in the CMB, its doorbell by RDMA WRITE: completion status ${hex(writeStatus)}`);
    const readStatus = await command(NVME_CMD_READ, CMB_READ_DATA);
    await read(Y_READ, BLOCK, CMB_READ_DATA, cmbMr.rkey);
    log(`host Y: an NVMe Read of LBA 0 into the CMB the same way (status ${hex(readStatus)}), then an RDMA READ of it`);
    const targetCalls = target.calls - before;
    log(`host X made ${targetCalls} calls while host Y drove nvme1`);
    const readBack = Buffer.from(staging.subarray(Y_READ, Y_READ + BLOCK));
    return { expected, readBack, statuses: [writeStatus, readStatus], targetCalls };
  } finally {
    for (const ctx of contexts) ctx.close();
    for (const peer of [device, deviceIommufd, dev, admin]) peer.close();
    await hostX.close();
    await hostY.close();
  }
}

if (require.main === module) {
  rdmaNvmeDoorbell({
    registry: process.env.DMABUF_REGISTRY_ADDRESS ?? '127.0.0.1:50053',
    vfioPci: process.env.VFIO_PCI_ADDRESS ?? '127.0.0.1:50052',
    nicY: process.env.RDMA_NIC_A_ADDRESS ?? '127.0.0.1:50054',
    nicX: process.env.RDMA_NIC_B_ADDRESS ?? '127.0.0.1:50055',
    log: (line) => console.log(line),
  }).then(
    ({ expected, readBack, statuses, targetCalls }) => {
      const identical = statuses.every((status) => status === NVME_SC_SUCCESS) && readBack.equals(expected) && targetCalls === 0;
      console.log(`${expected.length} bytes written to nvme1 and read back by host Y through RDMA alone: ${identical ? 'identical' : 'different'}`);
      process.exit(identical ? 0 : 1);
    },
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
