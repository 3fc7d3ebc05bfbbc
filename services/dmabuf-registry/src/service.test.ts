import { expect } from 'chai';
import { expectErrno } from './testing/harness';
import { loadRegistrySettings } from './service';

const GiB = 1024 ** 3;

describe('dmabuf-registry settings', () => {
  it('caps the heap at 8 GiB and each process at 2 GiB by default', () => {
    const settings = loadRegistrySettings({});
    expect([settings.DMABUF_REGISTRY_HEAP_MAX_BYTES, settings.DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES]).to.deep.equal([8 * GiB, 2 * GiB]);
  });

  it('lowers the per-process default to a heap cap below it', () => {
    const settings = loadRegistrySettings({ DMABUF_REGISTRY_HEAP_MAX_BYTES: String(GiB) });
    expect(settings.DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES).to.equal(GiB);
  });

  it('takes a per-process limit up to the heap’s cap', () => {
    const settings = loadRegistrySettings({ DMABUF_REGISTRY_HEAP_MAX_BYTES: String(4 * GiB), DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES: String(4 * GiB) });
    expect(settings.DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES).to.equal(4 * GiB);
  });

  it('refuses a per-process limit above the heap’s cap with EINVAL naming the variable', () => {
    const error = expectErrno(
      () => loadRegistrySettings({ DMABUF_REGISTRY_HEAP_MAX_BYTES: String(GiB), DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES: String(2 * GiB) }),
      'EINVAL',
    );
    expect(error.message).to.contain('DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES: must not exceed DMABUF_REGISTRY_HEAP_MAX_BYTES');
  });

  it('allows 65530 VMAs per process and pins at most 262144 pages per call by default', () => {
    const settings = loadRegistrySettings({});
    expect([settings.DMABUF_REGISTRY_MAX_MAP_COUNT, settings.DMABUF_REGISTRY_MAX_PIN_PAGES]).to.deep.equal([65530, 262144]);
  });

  it('refuses a VMA limit or a pin limit below 1 with EINVAL naming the variable', () => {
    expect(expectErrno(() => loadRegistrySettings({ DMABUF_REGISTRY_MAX_MAP_COUNT: '0' }), 'EINVAL').message).to.contain('DMABUF_REGISTRY_MAX_MAP_COUNT');
    expect(expectErrno(() => loadRegistrySettings({ DMABUF_REGISTRY_MAX_PIN_PAGES: '0' }), 'EINVAL').message).to.contain('DMABUF_REGISTRY_MAX_PIN_PAGES');
  });

  it('refuses a per-process limit that is not an integer of at least a page with EINVAL', () => {
    expectErrno(() => loadRegistrySettings({ DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES: '1.5' }), 'EINVAL');
    expectErrno(() => loadRegistrySettings({ DMABUF_REGISTRY_HEAP_PROCESS_MAX_BYTES: '100' }), 'EINVAL');
  });
});
