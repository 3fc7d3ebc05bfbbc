/**
 * A process posting through user queues, for the fault tests: its own Node
 * process, so that it can die for real (SIGKILL) with WQEs in its rings.
 *
 *   node ring-poster.js <registry address> <nic address> <shm dir> <name>
 *
 * Opens a RegistrySession and a verbs context with user queues, a 64 KiB
 * host buffer registered as MR (iova 0x10000) and an RC QP with a 256-entry
 * send queue, and prints `{"event":"ready","gid":"<hex>","qpNum":N}`. Then
 * one command per stdin line, each answered by one JSON line:
 *
 *   connect <gid hex> <qpNum>   RESET -> RTS towards the peer
 *   send <count>                posts <count> SENDs into the ring at once,
 *                               SEND i carrying the u32 i (never polled)
 *   exit                        close the session and exit 0
 */
import * as readline from 'node:readline';
import { RegistrySession } from '@p2p/dmabuf-client';
import { rdma } from '@p2p/proto';
import { IBV_ACCESS_LOCAL_WRITE, IBV_SEND_SIGNALED, VerbsContext } from '@p2p/verbs';

const IOVA = 0x10000n;
const SLOT = 64;

function say(message: object): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

async function main(): Promise<void> {
  const [registry, nic, shmDir, name] = process.argv.slice(2);
  const session = await RegistrySession.open(registry!, { name: name!, shmDir: shmDir! });
  const ctx = await VerbsContext.open(nic!, session, undefined, { queues: 'user' });
  const { gid } = await ctx.queryPort(1);
  const pd = await ctx.allocPd();
  const { fd } = await session.heapAllocate(64 * 1024);
  const mr = await ctx.regMr(pd, { heapFd: fd, length: 64 * 1024, iova: Number(IOVA), access: IBV_ACCESS_LOCAL_WRITE });
  const { cqHandle } = await ctx.createCq(1023);
  const { qpNum } = await ctx.createQp({ pdHandle: pd, sendCqHandle: cqHandle, recvCqHandle: cqHandle, cap: { maxSendWr: 256, maxRecvWr: 16, maxSendSge: 1, maxRecvSge: 1 } });
  say({ event: 'ready', gid: Buffer.from(gid).toString('hex'), qpNum });
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const [command, ...args] = line.trim().split(/\s+/);
    try {
      if (command === 'connect') {
        await ctx.connectRc(qpNum, { gid: Buffer.from(args[0]!, 'hex'), qpNum: Number(args[1]) });
        say({ ok: true });
      } else if (command === 'send') {
        const count = Number(args[0]);
        const stamps = Buffer.alloc(count * SLOT);
        for (let i = 0; i < count; i++) stamps.writeUInt32LE(i, i * SLOT);
        await session.cpuWrite(fd, 0n, stamps);
        const wrs = Array.from({ length: count }, (_, i) =>
          rdma.SendWr.fromPartial({ wrId: BigInt(i), opcode: rdma.WrOpcode.WR_OPCODE_SEND, sendFlags: IBV_SEND_SIGNALED, sgList: [{ addr: IOVA + BigInt(i * SLOT), length: 4, lkey: mr.lkey }] }),
        );
        say({ ok: true, posted: ctx.userQp(qpNum)!.postSend(wrs) });
      } else if (command === 'exit') {
        ctx.close();
        await session.close();
        say({ ok: true });
        process.exit(0);
      } else {
        say({ ok: false, errno: 'EINVAL', message: `unknown command ${command}` });
      }
    } catch (error) {
      say({ ok: false, message: error instanceof Error ? error.message : String(error) });
    }
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
