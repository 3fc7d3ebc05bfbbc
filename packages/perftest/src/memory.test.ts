import { expect } from 'chai';
import { pci } from '@p2p/proto';
import { DEVICE_MEMORY_BAR, memoryByName, memoryNames } from './memory';

const functions = [
  { name: 'nvme0', bdf: '0000:03:00.0', kind: pci.FunctionKind.FUNCTION_KIND_NVME },
  { name: 'accel0', bdf: '0000:07:00.0', kind: pci.FunctionKind.FUNCTION_KIND_ACCEL },
  { name: 'nic0', bdf: '0000:04:00.0', kind: pci.FunctionKind.FUNCTION_KIND_NIC },
];

describe('perftest memory names', () => {
  it('names host memory, each accelerator (its BAR2) and each NVMe controller\'s CMB (its BAR2)', () => {
    expect([...memoryNames(functions).keys()]).to.deep.equal(['host', 'nvme0-cmb', 'accel0']);
    expect(memoryByName('host', functions, '--mem')).to.deep.equal({ kind: 'host' });
    expect(memoryByName('accel0', functions, '--mem')).to.deep.equal({ kind: 'bar', name: 'accel0', bdf: '0000:07:00.0', bar: DEVICE_MEMORY_BAR });
    expect(memoryByName('nvme0-cmb', functions, '--mem')).to.deep.include({ bdf: '0000:03:00.0', bar: 2 });
  });

  it('refuses any other name with EINVAL naming the flag and the choices', () => {
    expect(() => memoryByName('nic0', functions, '--local-mem')).to.throw(/^EINVAL: --local-mem "nic0": no such memory; one of host, nvme0-cmb, accel0$/);
  });
});
