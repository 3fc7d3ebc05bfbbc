import { expect } from 'chai';
import { errno } from '@p2p/errno';
import type { dmabuf } from '@p2p/proto';
import { expectErrno } from '../testing/harness';
import { RegistryUserMemory } from './registry-user-memory';

const SHM_ID = 'platform-tmpfs';

/** The registry session's pin calls, answering `answer` and logging pins and unpins; `unpinErrors` fail the first unpins, one each. */
function registry(answer: Partial<dmabuf.PinUserPagesResponse>, ...unpinErrors: Error[]) {
  const log: string[] = [];
  return {
    log,
    session: {
      shmId: SHM_ID,
      state: 'open' as const,
      pinUserPages: async (pid: number, addr: bigint | number, length: bigint | number, write: boolean): Promise<dmabuf.PinUserPagesResponse> => {
        log.push(`pin ${pid} 0x${addr.toString(16)}+0x${length.toString(16)}${write ? ' write' : ''}`);
        return { pinId: 7n, directory: '/dev/shm/p2p', shm: { id: SHM_ID }, extents: [], ...answer };
      },
      unpinUserPages: async (pinId: bigint | number): Promise<void> => {
        log.push(`unpin ${pinId}`);
        const error = unpinErrors.shift();
        if (error !== undefined) throw error;
      },
    },
  };
}

describe('RegistryUserMemory: pin_user_pages() as the registry lends it', () => {
  it("answers the registry's extents as the memory behind the range, in order", async () => {
    const { session, log } = registry({ extents: [{ segment: 'heap-1', segmentOffset: 8192n, length: 4096n }, { segment: 'heap-2', segmentOffset: 0n, length: 8192n }] });
    const pinned = await new RegistryUserMemory(session).pin(12, 0x7000_0000n, 0x3000n, true);
    expect(pinned.extents).to.deep.equal([
      { segment: 'heap-1', offset: 8192, length: 4096 },
      { segment: 'heap-2', offset: 0, length: 8192 },
    ]);
    expect(log).to.deep.equal(['pin 12 0x70000000+0x3000 write']);
  });

  it("passes the registry's EFAULT through", async () => {
    const session = {
      shmId: SHM_ID,
      state: 'open' as const,
      pinUserPages: async (): Promise<dmabuf.PinUserPagesResponse> => {
        throw errno('EFAULT', 'pid 12 has nothing mapped at 0x1000');
      },
      unpinUserPages: async (): Promise<void> => undefined,
    };
    await expectErrno(new RegistryUserMemory(session).pin(12, 0x1000n, 0x1000n, false), 'EFAULT', 'nothing mapped');
  });

  it('EFAULT for pages in a tmpfs the platform does not share, unpinned at once', async () => {
    const { session, log } = registry({ shm: { id: 'another-tmpfs' }, directory: '/elsewhere' });
    await expectErrno(new RegistryUserMemory(session).pin(12, 0x1000n, 0x1000n, false), 'EFAULT', '/elsewhere');
    expect(log).to.deep.equal(['pin 12 0x1000+0x1000', 'unpin 7']);
  });

  it('unpins once, however often unpin() is called', async () => {
    const { session, log } = registry({});
    const pinned = await new RegistryUserMemory(session).pin(12, 0x1000n, 0x1000n, false);
    await pinned.unpin();
    await pinned.unpin();
    expect(log).to.deep.equal(['pin 12 0x1000+0x1000', 'unpin 7']);
  });

  it('takes an unpin on an ended session as done: ESHUTDOWN, the end of the session unpinned everything', async () => {
    const ended = registry({}, errno('ESHUTDOWN', 'registry session "vfio-pci" was closed'));
    await (await new RegistryUserMemory(ended.session).pin(12, 0x1000n, 0x1000n, false)).unpin();
    expect(ended.log).to.deep.equal(['pin 12 0x1000+0x1000', 'unpin 7']);
  });

  it("passes the registry's refusal of the unpin on (ENOENT)", async () => {
    const refused = registry({}, errno('ENOENT', 'no pin 7'));
    await expectErrno((await new RegistryUserMemory(refused.session).pin(12, 0x1000n, 0x1000n, false)).unpin(), 'ENOENT');
  });

  it('sends an unpin the registry did not take again until it does, as unpin_user_pages() cannot fail', async () => {
    const cut = registry({}, errno('ECONNRESET', 'the link to the registry is down'), errno('EIO', 'no connection established'));
    await (await new RegistryUserMemory(cut.session).pin(12, 0x1000n, 0x1000n, false)).unpin();
    for (let waited = 0; cut.log.length < 4 && waited < 5000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(cut.log).to.deep.equal(['pin 12 0x1000+0x1000', 'unpin 7', 'unpin 7', 'unpin 7']);
  });
});
