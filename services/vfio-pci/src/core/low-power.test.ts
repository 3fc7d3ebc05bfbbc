import { expect } from 'chai';
import { expectErrno, harness, NVME, PID, type Harness } from '../testing/harness';
import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY as ENTRY,
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP as WAKEUP,
  VFIO_DEVICE_FEATURE_LOW_POWER_EXIT as EXIT,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET as SET,
} from '../uapi/vfio';

async function setup(): Promise<Harness & { fd: number; id: bigint }> {
  const h = harness();
  const fd = await h.open();
  const buf = await h.exportBuf(fd);
  return { ...h, fd, id: h.registry.bufferAt(PID, buf).bufferId };
}

const wakeup = (fd: number): Uint8Array => new Uint8Array(new Int32Array([fd, 0]).buffer);

describe('low power: VFIO_DEVICE_FEATURE_LOW_POWER_*', () => {
  it('entry revokes before the function is suspended to D3hot; exit resumes it, then un-revokes', async () => {
    const h = await setup();
    const mark = h.log.length;
    expect(await h.vfio.deviceFeature(PID, h.fd, { flags: ENTRY | SET })).to.deep.equal({ fd: -1 });
    expect(h.since(mark)).to.deep.equal([`move ${h.id} revoke`, `moved ${h.id}`, `set-power ${NVME} D3hot`]);
    expect(h.vfio.devices()[0]!.lowPower).to.equal(true);

    const exit = h.log.length;
    await h.vfio.deviceFeature(PID, h.fd, { flags: EXIT | SET });
    expect(h.since(exit)).to.deep.equal([`set-power ${NVME} D0`, `config-write ${NVME} 0x4/2 0x3`, `move ${h.id} unrevoke`, `moved ${h.id}`]);
    expect(h.vfio.devices()[0]!.lowPower).to.equal(false);
    expect(h.vfio.buffers()[0]!.revoked).to.equal(false);
  });

  it('a buffer exported in low power starts revoked', async () => {
    const h = await setup();
    await h.vfio.deviceFeature(PID, h.fd, { flags: ENTRY | SET });
    const buf = await h.exportBuf(h.fd);
    expect(h.registry.bufferAt(PID, buf).request.revoked).to.equal(true);
  });

  it('EINVAL for a second entry (its revoke has nothing left to do); exit when not in low power is a no-op', async () => {
    const h = await setup();
    await h.vfio.deviceFeature(PID, h.fd, { flags: ENTRY | SET });
    const mark = h.log.length;
    await expectErrno(h.vfio.deviceFeature(PID, h.fd, { flags: ENTRY | SET }), 'EINVAL', 'already');
    await expectErrno(h.vfio.deviceFeature(PID, h.fd, { flags: WAKEUP | SET, payload: { kind: 'raw', data: wakeup(h.fd) } }), 'EINVAL', 'already');
    expect(h.since(mark)).to.deep.equal([]);
    await h.vfio.deviceFeature(PID, h.fd, { flags: EXIT | SET });
    const again = h.log.length;
    await h.vfio.deviceFeature(PID, h.fd, { flags: EXIT | SET });
    expect(h.since(again)).to.deep.equal([]);
  });

  it('SET only: GET is EINVAL, PROBE|SET does nothing', async () => {
    const h = await setup();
    for (const feature of [ENTRY, WAKEUP, EXIT]) {
      await expectErrno(h.vfio.deviceFeature(PID, h.fd, { flags: feature | VFIO_DEVICE_FEATURE_GET }), 'EINVAL', 'does not support GET');
      await h.vfio.deviceFeature(PID, h.fd, { flags: feature | SET | VFIO_DEVICE_FEATURE_PROBE });
    }
    expect(h.vfio.devices()[0]!.lowPower).to.equal(false);
    expect(h.vfio.buffers()[0]!.revoked).to.equal(false);
  });

  it('with wakeup: EINVAL for a short argsz or a negative fd, EFAULT for a short buffer, EBADF for an fd not held', async () => {
    const h = await setup();
    const call = (data: Uint8Array, argsz?: number) =>
      h.vfio.deviceFeature(PID, h.fd, { flags: WAKEUP | SET, ...(argsz === undefined ? {} : { argsz }), payload: { kind: 'raw', data } });
    await expectErrno(call(wakeup(h.fd), 8 + 4), 'EINVAL', '8-byte');
    await expectErrno(call(new Uint8Array(4), 8 + 8), 'EFAULT');
    await expectErrno(call(wakeup(-1)), 'EINVAL', 'negative');
    await expectErrno(call(wakeup(77)), 'EBADF');
    expect(h.vfio.buffers()[0]!.revoked).to.equal(false);
    await call(wakeup(h.fd));
    expect(h.vfio.devices()[0]).to.deep.include({ lowPower: true, wakeupFd: h.fd });
  });

  it('close in low power: revoked for good, left low power without an un-revoke in between', async () => {
    const h = await setup();
    await h.vfio.deviceFeature(PID, h.fd, { flags: ENTRY | SET });
    const mark = h.log.length;
    await h.registry.closeFd(PID, h.fd);
    expect(h.since(mark).filter((line) => line.startsWith('move '))).to.deep.equal([`move ${h.id} revoke permanent`]);
    expect(h.since(mark)).to.include(`set-power ${NVME} D0`);
    expect(h.vfio.devices()[0]!.lowPower).to.equal(false);
  });
});
