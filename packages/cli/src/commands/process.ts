import type { Command } from 'commander';
import Table from 'cli-table3';
import { errno } from '@p2p/errno';
import { dmabuf } from '@p2p/proto';
import { errnoOf } from '@p2p/status';
import type { Context } from '../context';
import { ACCESS_FLAGS, flagNames, OPEN_FLAGS, parseFlags } from '../flags';
import { hex, parseSmall, parseUnsigned } from '../format';
import type { ModelProcess } from '../session/model-process';
import { processAction } from '../session/process-action';

function fdArg(text: string): number {
  return parseSmall(text, 'fd', 0x7fff_ffff);
}

/** `offset:length` (hex or decimal, K/M/G), a dma range of VFIO_DEVICE_FEATURE_DMA_BUF. */
function rangeArg(text: string): { offset: bigint; length: bigint } {
  const [offset, length, extra] = text.split(':');
  if (offset === undefined || length === undefined || extra !== undefined) throw errno('EINVAL', `range ${JSON.stringify(text)}: offset:length`);
  return { offset: parseUnsigned(offset, 'range offset'), length: parseUnsigned(length, 'range length') };
}

/** vfio-pci bind (the administrator's echo into driver_override and bind), tolerating a device already bound. */
async function bindToVfio(context: Context, bdf: string): Promise<void> {
  await context.clients.vfio.bind({ bdf, variants: undefined }).catch((error: unknown) => {
    if (errnoOf(error) !== 'EBUSY') throw error;
  });
}

interface ExportOptions {
  readonly range?: string[];
  readonly flags: string;
}

interface RegMrOptions {
  readonly nic: string;
  readonly access: string;
  readonly offset: string;
  readonly length?: string;
  readonly iova: string;
}

/**
 * The commands that act as a model process (`p2p session`): each runs in the
 * session's process, so the fds it makes are there for the next command.
 */
export function processCommands(program: Command): void {
  program
    .command('open')
    .description('open a function through vfio-pci (binding it first if needed): a device fd in the session process')
    .argument('<function>', 'a BDF or a name (nvme1, accel0)')
    .action(
      processAction(async (context, process_: ModelProcess, [ref]) => {
        const { bdf, name } = await context.clients.findFunction(ref!);
        await bindToVfio(context, bdf);
        const { fd } = await process_.vfio.openDevice({ pid: process_.pid, bdf });
        context.print({ pid: process_.pid, fd, bdf }, () => `pid ${process_.pid}: fd ${fd} is vfio device ${bdf} (${name})`);
      }),
    );

  program
    .command('export')
    .description('export BAR ranges of an open vfio device as a dma-buf (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF)')
    .argument('<device-fd>', 'the device fd `p2p open` gave')
    .argument('<bar>', 'the BAR (region index) 0-5')
    .option('-r, --range <offset:length...>', 'dma ranges within the BAR (default: the whole BAR)')
    .option('-f, --flags <names>', 'open flags of the dma-buf fd: rdwr, rdonly, wronly, cloexec, nonblock', 'rdwr,cloexec')
    .action(
      processAction<ExportOptions>(async (context, process_, [deviceText, barText], options) => {
        const deviceFd = fdArg(deviceText!);
        const regionIndex = parseSmall(barText!, 'bar', 5);
        const openFlags = parseFlags(options.flags, OPEN_FLAGS, '--flags');
        let ranges = (options.range ?? []).map(rangeArg);
        if (ranges.length === 0) {
          const region = await process_.vfio.getRegionInfo({ pid: process_.pid, deviceFd, index: regionIndex });
          ranges = [{ offset: 0n, length: region.size }];
        }
        // Loaded here: vfio-pci's module is heavy, and only this command needs its uAPI numbers.
        const { vfioUapi } = await import('@p2p/vfio-pci');
        const { fd } = await process_.vfio.deviceFeature({
          pid: process_.pid,
          deviceFd,
          argsz: 0,
          flags: vfioUapi.VFIO_DEVICE_FEATURE_GET | vfioUapi.VFIO_DEVICE_FEATURE_DMA_BUF,
          payload: { $case: 'dmaBuf', value: { regionIndex, openFlags, flags: 0, dmaRanges: ranges } },
        });
        const size = ranges.reduce((sum, r) => sum + r.length, 0n);
        process_.sizes.set(fd, size);
        context.print({ pid: process_.pid, fd, deviceFd, bar: regionIndex, ranges, size, openFlags: flagNames(openFlags, OPEN_FLAGS) }, () =>
          `pid ${process_.pid}: fd ${fd} is a dma-buf of BAR${regionIndex} ${ranges.map((r) => `[${hex(r.offset)}, +${hex(r.length)})`).join(' ')}, ${hex(size)} bytes, ${flagNames(openFlags, OPEN_FLAGS)}`,
        );
      }),
    );

  const heap = program.command('heap').description('the system dma-buf heap (/dev/dma_heap/system)');
  heap
    .command('alloc')
    .description('allocate a system-heap dma-buf (DMA_HEAP_IOCTL_ALLOC): an fd in the session process')
    .argument('<size>', 'bytes (K/M/G allowed)')
    .option('-f, --flags <names>', 'open flags of the fd', 'rdwr,cloexec')
    .action(
      processAction<{ flags: string }>(async (context, process_, [sizeText], options) => {
        const size = parseUnsigned(sizeText!, 'size');
        const { fd, bufferId } = await process_.session.heapAllocate(size, parseFlags(options.flags, OPEN_FLAGS, '--flags'));
        process_.sizes.set(fd, size);
        context.print({ pid: process_.pid, fd, bufferId, size }, () => `pid ${process_.pid}: fd ${fd} is a system-heap dma-buf of ${hex(size)} bytes (buffer ${hex(bufferId)})`);
      }),
    );

  program
    .command('import')
    .description("attach a dma-buf to an importing function (dma_buf_dynamic_attach): a dynamic importer that honours move_notify")
    .argument('<fd>', 'a dma-buf fd of the session process')
    .requiredOption('-i, --importer <function>', 'the importing function (nic0, accel0...), for its P2P reach')
    .action(
      processAction<{ importer: string }>(async (context, process_, [fdText], options) => {
        const fd = fdArg(fdText!);
        const { bdf, name } = await context.clients.findFunction(options.importer);
        const importer = await process_.session.importDmaBuf({ fd, importerBdf: bdf });
        process_.attachments.set(importer.attachmentId, { importer, fd, importerName: name });
        context.print({ pid: process_.pid, fd, attachment: importer.attachmentId, buffer: importer.bufferId, importer: bdf }, () =>
          `attachment ${hex(importer.attachmentId)}: buffer ${hex(importer.bufferId)} (fd ${fd}) attached to ${name} (${bdf})`,
        );
      }),
    );

  program
    .command('map')
    .description('map an attachment (dma_buf_map_attachment): how the importer reaches the memory')
    .argument('<attachment>', 'the id `p2p import` gave')
    .action(
      processAction(async (context, process_, [idText]) => {
        const id = parseUnsigned(idText!, 'attachment');
        const info = await process_.attachment(id).importer.map();
        const transport = dmabuf.transportToJSON(info.transport);
        const mapType = dmabuf.dmaMapTypeToJSON(info.mapType);
        context.print({ attachment: id, transport, mapType, generation: info.generation, extents: info.extents }, () => [
          `attachment ${hex(id)} mapped: ${mapType} over ${transport}, generation ${info.generation}`,
          ...info.extents.map((e) => `  ${JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? hex(v) : v))}`),
        ]);
      }),
    );

  program
    .command('unmap')
    .description('unmap an attachment (dma_buf_unmap_attachment)')
    .argument('<attachment>', 'the attachment id')
    .action(
      processAction(async (context, process_, [idText]) => {
        const id = parseUnsigned(idText!, 'attachment');
        await process_.attachment(id).importer.unmap();
        context.print({ attachment: id, mapped: false }, () => `attachment ${hex(id)} unmapped`);
      }),
    );

  program
    .command('detach')
    .description('detach an attachment (dma_buf_detach)')
    .argument('<attachment>', 'the attachment id')
    .action(
      processAction(async (context, process_, [idText]) => {
        const id = parseUnsigned(idText!, 'attachment');
        await process_.attachment(id).importer.detach();
        process_.attachments.delete(id);
        context.print({ attachment: id, detached: true }, () => `attachment ${hex(id)} detached`);
      }),
    );

  program
    .command('close')
    .description('close an fd of the session process (a dma-buf, a device)')
    .argument('<fd>', 'the fd')
    .action(
      processAction(async (context, process_, [fdText]) => {
        const fd = fdArg(fdText!);
        await process_.session.closeFd(fd);
        process_.sizes.delete(fd);
        context.print({ pid: process_.pid, fd, closed: true }, () => `pid ${process_.pid}: fd ${fd} closed`);
      }),
    );

  program
    .command('fds')
    .description("the session process's fds (/proc/<pid>/fd), its attachments and its MRs")
    .action(
      processAction(async (context, process_) => {
        const { processes } = await process_.session.listProcesses();
        const fds = (processes.find((p) => p.pid === process_.pid)?.fds ?? []).map((f) => ({ ...f, kind: dmabuf.fileKindToJSON(f.kind).replace('FILE_KIND_', '').toLowerCase() }));
        const attachments = [...process_.attachments].map(([id, a]) => ({ id, fd: a.fd, importer: a.importerName, state: a.importer.mapped ? 'mapped' : a.importer.state }));
        const mrs = [...process_.mrs.values()];
        context.print({ pid: process_.pid, name: process_.name, fds, attachments, mrs }, () => {
          const table = new Table({ head: ['fd', 'kind', 'file', 'owner'], style: { head: [], border: [] } });
          table.push(...fds.map((f) => [String(f.fd), f.kind, hex(f.fileId), f.owner]));
          const lines = [`pid ${process_.pid} (${process_.name})`, fds.length === 0 ? 'no fds' : table.toString()];
          for (const a of attachments) lines.push(`attachment ${hex(a.id)}: fd ${a.fd} imported by ${a.importer}, ${a.state}`);
          for (const mr of mrs) lines.push(`mr ${mr.mrHandle} on ${mr.nic}: fd ${mr.fd}, iova ${hex(mr.iova)}+${hex(mr.length)}, lkey ${hex(mr.lkey)}, rkey ${hex(mr.rkey)}`);
          return lines;
        });
      }),
    );

  program
    .command('reg-mr')
    .description('register a dma-buf with a NIC (ibv_reg_dmabuf_mr; ibv_reg_mr for system-heap memory)')
    .argument('<fd>', 'a dma-buf fd of the session process')
    .requiredOption('-n, --nic <nic>', 'the NIC: nic0, nic1')
    .option('-a, --access <names>', 'ibv_access_flags: local_write, remote_write, remote_read, remote_atomic, relaxed_ordering', 'local_write')
    .option('--offset <bytes>', 'where in the dma-buf the MR starts', '0')
    .option('--length <bytes>', 'the MR length (default: to the end of the dma-buf)')
    .option('--iova <address>', 'the MR iova', '0')
    .action(
      processAction<RegMrOptions>(async (context, process_, [fdText], options) => {
        const fd = fdArg(fdText!);
        const access = parseFlags(options.access, ACCESS_FLAGS, '--access');
        const offset = parseUnsigned(options.offset, '--offset');
        const iova = parseUnsigned(options.iova, '--iova');
        const file = await process_.session.resolveFd(fd);
        if (file.kind !== dmabuf.FileKind.FILE_KIND_DMA_BUF) throw errno('EINVAL', `fd ${fd} is not a dma-buf`);
        const size = process_.sizes.get(fd);
        const length = options.length !== undefined ? parseUnsigned(options.length, '--length') : size !== undefined ? size - offset : undefined;
        if (length === undefined) throw errno('EINVAL', `--length: fd ${fd} was not made in this session, so give the MR's length`);
        if (length <= 0n) throw errno('EINVAL', `--offset ${hex(offset)} is past the end of fd ${fd}`);
        const nic = await process_.nic(options.nic);
        const heapMemory = file.owner === 'system-heap';
        const mr = heapMemory
          ? await nic.context.regMr(nic.pdHandle, { heapFd: fd, offset: Number(offset), length: Number(length), iova: Number(iova), access })
          : await nic.context.regDmabufMr(nic.pdHandle, { fd, offset: Number(offset), length: Number(length), iova: Number(iova), access });
        process_.mrs.set(`${options.nic}:${mr.mrHandle}`, { nic: options.nic, mrHandle: mr.mrHandle, lkey: mr.lkey, rkey: mr.rkey, fd, iova, length });
        context.print({ nic: options.nic, fd, mrHandle: mr.mrHandle, lkey: mr.lkey, rkey: mr.rkey, iova, length, access: flagNames(access, ACCESS_FLAGS), verb: heapMemory ? 'ibv_reg_mr' : 'ibv_reg_dmabuf_mr' }, () =>
          `mr ${mr.mrHandle} on ${options.nic} (${heapMemory ? 'ibv_reg_mr' : 'ibv_reg_dmabuf_mr'}): fd ${fd} [${hex(offset)}, +${hex(length)}) at iova ${hex(iova)}, lkey ${hex(mr.lkey)}, rkey ${hex(mr.rkey)}, ${flagNames(access, ACCESS_FLAGS)}`,
        );
      }),
    );

  program
    .command('dereg-mr')
    .description('deregister an MR (ibv_dereg_mr)')
    .argument('<mr>', 'the MR handle `p2p reg-mr` gave')
    .requiredOption('-n, --nic <nic>', 'the NIC it is registered on')
    .action(
      processAction<{ nic: string }>(async (context, process_, [handleText], options) => {
        const handle = parseSmall(handleText!, 'mr');
        const key = `${options.nic}:${handle}`;
        if (!process_.mrs.has(key)) throw errno('ENOENT', `this process registered no mr ${handle} on ${options.nic}`);
        await (await process_.nic(options.nic)).context.deregMr(handle);
        process_.mrs.delete(key);
        context.print({ nic: options.nic, mrHandle: handle, deregistered: true }, () => `mr ${handle} on ${options.nic} deregistered`);
      }),
    );
}
