import * as path from 'node:path';
import { expect } from 'chai';
import { SegmentStore, type WriteNoticeServer, WRITE_NOTICE_SOCKET, WriteNoticeClient } from '@p2p/shm';
import { eventually, useTempShmDir } from '@p2p/testing';
import { RelocatableMemory } from './relocatable-memory';
import { platform, type Platform, TESTDEV, WINDOW, WINDOWED_TOPOLOGY } from './testing/platform';
import { listenForWriteNotices } from './write-notices';

const INSTANCE = '0badcafe';
const MEMORY_NAME = '0000-0a-00.0-bar0';

describe('write notices into pci-emu', () => {
  const dir = useTempShmDir();
  let p: Platform;
  let memories: Map<string, RelocatableMemory>;
  let server: WriteNoticeServer;
  let client: WriteNoticeClient;
  let failures: unknown[];

  beforeEach(async () => {
    memories = new Map();
    const store = new SegmentStore({ dir: dir() });
    p = platform(dir(), WINDOWED_TOPOLOGY, (name, size) => {
      const memory = new RelocatableMemory(store, `pci-emu.${INSTANCE}.${name}`, size);
      memories.set(name, memory);
      return memory;
    });
    p.events();
    failures = [];
    server = await listenForWriteNotices(dir(), INSTANCE, memories, p.bus, (error) => failures.push(error));
    client = new WriteNoticeClient(path.join(dir(), WRITE_NOTICE_SOCKET), { retryAfterMs: 0 });
  });

  afterEach(async () => {
    client.close();
    await server.close();
    p.bus.close();
    for (const memory of memories.values()) memory.destroy();
  });

  /** The segment file and offset in it behind a BAR offset of the window. */
  const segmentOf = (barOffset: number): { segment: string; offset: number } => {
    const [extent] = memories.get(MEMORY_NAME)!.extents(barOffset - WINDOW.offset, 4);
    return { segment: extent!.segment, offset: extent!.offset };
  };

  it('turns a notice about a window segment into a posted write the device hears of, at its BAR offset (path p2p)', async () => {
    const { segment, offset } = segmentOf(WINDOW.offset + 0x1008);
    client.notify(segment, offset, 8);
    const seen: ReturnType<Platform['events']> = [];
    await eventually('the posted write', () => {
      seen.push(...p.events());
      return seen.length > 0;
    });
    expect(seen).to.deep.equal([{ type: 'bar-written', bdf: TESTDEV, bar: 0, offset: WINDOW.offset + 0x1008, length: 8, path: 'p2p' }]);
  });

  it('drops notices about another instance, a relocated generation, the heap, or a name of no BAR; a later good one still arrives', async () => {
    const stale = segmentOf(WINDOW.offset);
    memories.get(MEMORY_NAME)!.relocate();
    client.notify(stale.segment, stale.offset, 4);
    client.notify(stale.segment.replace(INSTANCE, 'deadbeef'), stale.offset, 4);
    client.notify('heap.1.0', 0, 4);
    client.notify(`pci-emu.${INSTANCE}.0000-0a-00.0-bar9.g0.0`, 0, 4);
    client.notify(`pci-emu.${INSTANCE}.nothing`, 0, 4);
    const fresh = segmentOf(WINDOW.offset + 4);
    client.notify(fresh.segment, fresh.offset, 4);
    const seen: ReturnType<Platform['events']> = [];
    await eventually('the good notice', () => {
      seen.push(...p.events());
      return seen.length > 0;
    });
    expect(seen).to.deep.equal([{ type: 'bar-written', bdf: TESTDEV, bar: 0, offset: WINDOW.offset + 4, length: 4, path: 'p2p' }]);
    expect(failures).to.deep.equal([]);
  });
});
