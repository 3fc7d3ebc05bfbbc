import type { PciIds } from '../config-space/type0-header';

/** Per-kind defaults a topology file may override (ids, romSize). */
export interface DeviceDefaults {
  readonly ids: PciIds;
  readonly linkWidth: number;
  readonly romSize: number;
}
