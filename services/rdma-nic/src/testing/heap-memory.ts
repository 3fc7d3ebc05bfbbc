import { errno } from '@p2p/errno';
import type { DmaBufMemory, MemoryWindow } from '../memory/memory';

/** Host memory on the JS heap, for tests. */
export class HeapMemory implements MemoryWindow {
  readonly buffer: Uint8Array;

  constructor(length: number) {
    this.buffer = new Uint8Array(length);
  }

  get length(): number {
    return this.buffer.length;
  }

  views(offset: number, length: number, out: Uint8Array[]): void {
    out.push(this.buffer.subarray(offset, offset + length));
  }
}

/**
 * A dma-buf on the JS heap whose exporter can revoke it: map() rejects
 * ENODEV while revoked. `writes` records the written() notices, each with
 * the bytes the range held when it came.
 */
export class HeapDmaBuf implements DmaBufMemory {
  readonly buffer: Uint8Array;
  readonly writes: { offset: number; length: number; bytes: number[] }[] = [];
  revoked = false;
  maps = 0;

  constructor(size: number) {
    this.buffer = new Uint8Array(size);
  }

  get size(): number {
    return this.buffer.length;
  }

  map(): Promise<void> {
    if (this.revoked) {
      return Promise.reject(errno('ENODEV', 'the exporter revoked the dma-buf'));
    }
    this.maps++;
    return Promise.resolve();
  }

  views(offset: number, length: number, out: Uint8Array[]): void {
    out.push(this.buffer.subarray(offset, offset + length));
  }

  written(offset: number, length: number): void {
    this.writes.push({ offset, length, bytes: [...this.buffer.subarray(offset, offset + length)] });
  }
}
