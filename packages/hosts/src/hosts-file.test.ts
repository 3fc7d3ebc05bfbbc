import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { ErrnoError } from '@p2p/errno';
import { hostEntry, readHostsFile, writeHostsFile } from './hosts-file';
import { hostLayout } from './layout';

describe('hosts file', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-hosts-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("reads back what was written: each host's services, NICs with their GIDs and wire addresses, segment directory", () => {
    const file = path.join(dir, 'hosts.json');
    writeHostsFile(file, [0, 1].map((i) => hostEntry(hostLayout(i), { shmDir: path.join(dir, `host${i}`), wirePort: 4791, pid: 100 + i })));
    const { hosts } = readHostsFile(file);
    expect(hosts.map((h) => h.name)).to.deep.equal(['host0', 'host1']);
    expect(hosts[1]!.services).to.deep.equal({ pciEmu: '127.0.0.1:50061', vfioPci: '127.0.0.1:50062', registry: '127.0.0.1:50063' });
    expect(hosts[1]!.nics[0]).to.include({ name: 'nic0', bdf: '0000:04:00.0', gid: '::ffff:127.0.1.2', address: '127.0.0.1:50064', wire: '127.0.1.2:4791' });
    expect(hosts[1]!.shmDir).to.equal(path.join(dir, 'host1'));
  });

  it('is ENOENT when there is no file', () => {
    expect(() => readHostsFile(path.join(dir, 'missing.json'))).to.throw(ErrnoError, 'no hosts file').with.property('errno', 'ENOENT');
  });

  it('is EINVAL naming the field that is wrong', () => {
    const file = path.join(dir, 'hosts.json');
    fs.writeFileSync(file, JSON.stringify({ version: 1, hosts: [{ ...hostEntry(hostLayout(0), { shmDir: 'relative', wirePort: 4791 }) }] }));
    expect(() => readHostsFile(file)).to.throw(ErrnoError, 'hosts.0.shmDir').with.property('errno', 'EINVAL');
  });

  it('is EINVAL for a file that is not JSON', () => {
    const file = path.join(dir, 'hosts.json');
    fs.writeFileSync(file, 'host0 127.0.0.1');
    expect(() => readHostsFile(file)).to.throw(ErrnoError, 'is not JSON').with.property('errno', 'EINVAL');
  });
});
