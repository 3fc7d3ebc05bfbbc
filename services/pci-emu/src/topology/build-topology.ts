import { errno } from '@p2p/errno';
import { PCI_ACS_CR, PCI_ACS_RR, PCI_ACS_SV, PCI_ACS_UF } from '../config-space/pci-regs';
import { BAR_WINDOW_ALIGNMENT as PAGE } from '../devices/device-model';
import { parseBdf } from './bdf';
import { Topology, type AddressWindow, type HostBridge, type NodeRole, type PcieSwitch, type TopologyNode } from './topology';
import { type AcsFlags, type FunctionSpec, type GenericBarSpec, type HostBridgeSpec, MAX_WINDOWED_BAR_SIZE, type PortSpec, type SwitchSpec, type TopologySpec } from './topology-schema';

const FOUR_GIB = 2 ** 32;
const TIB = 2 ** 40;

/** PCI_ACS_CTRL bits for a switch's ACS flags. */
function acsCtrl(acs: AcsFlags): number {
  return (
    (acs.sourceValidation ? PCI_ACS_SV : 0) |
    (acs.requestRedirect ? PCI_ACS_RR : 0) |
    (acs.completionRedirect ? PCI_ACS_CR : 0) |
    (acs.upstreamForwarding ? PCI_ACS_UF : 0)
  );
}

/**
 * Windows a host bridge gets when the file gives none, distinct per bridge
 * index so several bridges never overlap: 64 MiB of 32-bit space from 2 GiB
 * up, 1 TiB of 64-bit space per bridge from 1 TiB up, 4 KiB of I/O space.
 */
function defaultWindows(index: number): Record<'mmio32' | 'mmio64' | 'io', AddressWindow> {
  return {
    mmio32: { base: 0x8000_0000 + index * 0x0400_0000, size: 0x0400_0000 },
    mmio64: { base: (index + 1) * TIB, size: TIB },
    io: { base: 0x1000 * (index + 1), size: 0x1000 },
  };
}

const hex = (value: number): string => `0x${value.toString(16)}`;

/**
 * Checks what a schema cannot: unique names and BDFs, bus numbers that
 * match the links (a port's children sit on its secondary bus, which no other
 * port uses), one device per PCIe link, function 0 present, sane windows and
 * BAR layouts. Collects every problem, each prefixed with its field path.
 */
class TopologyBuilder {
  readonly problems: string[] = [];
  readonly hostBridges: HostBridge[] = [];
  readonly switches: PcieSwitch[] = [];
  readonly nodes: TopologyNode[] = [];
  readonly functions: FunctionSpec[] = [];
  readonly #names = new Map<string, string>();
  readonly #bdfs = new Map<string, string>();
  /** "domain:bus" -> path of whoever owns that bus number. */
  readonly #buses = new Map<string, string>();

  problem(path: string, message: string): void {
    this.problems.push(`${path}: ${message}`);
  }

  hostBridge(spec: HostBridgeSpec, index: number): void {
    const path = `hostBridges[${index}]`;
    this.#claimName(spec.name, `${path}.name`);
    this.#claimBus(spec.domain, spec.bus, `${path}.bus`);
    const windows = { ...defaultWindows(index), ...definedWindows(spec) };
    this.#checkWindows(windows, path);
    this.hostBridges.push({
      name: spec.name,
      domain: spec.domain,
      bus: spec.bus,
      p2pAllowed: spec.p2pAllowed,
      ...windows,
      rootPortBdfs: spec.rootPorts.map((port) => port.bdf),
    });
    spec.rootPorts.forEach((port, i) => {
      const portPath = `${path}.rootPorts[${i}]`;
      const bdf = parseBdf(port.bdf);
      if (bdf.domain !== spec.domain || bdf.bus !== spec.bus) {
        this.problem(`${portPath}.bdf`, `${port.bdf} is not on root bus ${hex(spec.bus)} of domain ${hex(spec.domain)}`);
      }
      this.#port(port, portPath, 'root_port', undefined, spec.name, 0);
    });
  }

  #port(port: PortSpec, path: string, role: NodeRole, parentBdf: string | undefined, hostBridge: string, acs: number): void {
    this.#node(port.bdf, `${path}.bdf`, role, parentBdf, hostBridge, acs);
    if (port.switch && port.functions) {
      this.problem(path, 'a PCIe link reaches one device: give either "switch" or "functions", not both');
      return;
    }
    if (port.switch) {
      this.#link(port.bdf, [port.switch.bdf], `${path}.switch.bdf`);
      this.#switch(port.switch, `${path}.switch`, port.bdf, hostBridge);
    } else if (port.functions) {
      this.#link(port.bdf, port.functions.map((fn) => fn.bdf), `${path}.functions`);
      port.functions.forEach((fn, i) => this.#function(fn, `${path}.functions[${i}]`, port.bdf, hostBridge));
    }
  }

  #switch(spec: SwitchSpec, path: string, parentBdf: string, hostBridge: string): void {
    this.#claimName(spec.name, `${path}.name`);
    this.#node(spec.bdf, `${path}.bdf`, 'switch_upstream', parentBdf, hostBridge, 0);
    this.switches.push({
      name: spec.name,
      upstreamBdf: spec.bdf,
      downstreamBdfs: spec.downstreamPorts.map((port) => port.bdf),
      acs: spec.acs,
    });
    // The downstream ports share the switch's internal bus, any device numbers.
    this.#secondaryBus(spec.bdf, spec.downstreamPorts.map((port) => port.bdf), `${path}.downstreamPorts`);
    spec.downstreamPorts.forEach((port, i) =>
      this.#port(port, `${path}.downstreamPorts[${i}]`, 'switch_downstream', spec.bdf, hostBridge, acsCtrl(spec.acs)),
    );
  }

  #function(spec: FunctionSpec, path: string, parentBdf: string, hostBridge: string): void {
    this.#claimName(spec.name, `${path}.name`);
    this.#node(spec.bdf, `${path}.bdf`, 'endpoint', parentBdf, hostBridge, 0);
    if (spec.kind === 'generic') {
      this.#genericBars(spec.bars, `${path}.bars`);
    }
    this.functions.push(spec);
  }

  /**
   * A root or downstream port links to a single device: pci_scan_slot() under
   * only_one_child() scans device 0 only, and a device without function 0 is
   * never found.
   */
  #link(portBdf: string, childBdfs: readonly string[], path: string): void {
    if (!this.#secondaryBus(portBdf, childBdfs, path)) {
      return;
    }
    const children = childBdfs.map(parseBdf);
    if (children.some((child) => child.device !== 0)) {
      this.problem(path, `below a PCIe port only device 00 exists (only_one_child()): ${childBdfs.join(', ')}`);
    } else if (!children.some((child) => child.fn === 0)) {
      this.problem(path, `the device has no function 0, so enumeration would not find it: ${childBdfs.join(', ')}`);
    }
  }

  /** The children of a bridge all sit on its secondary bus: one bus, above the bridge's, owned by nobody else. */
  #secondaryBus(bridgeBdf: string, childBdfs: readonly string[], path: string): boolean {
    const bridge = parseBdf(bridgeBdf);
    const children = childBdfs.map(parseBdf);
    const buses = new Set(children.map((child) => `${child.domain}:${child.bus}`));
    if (buses.size !== 1 || children[0]!.domain !== bridge.domain) {
      this.problem(path, `all must be on one bus in domain ${hex(bridge.domain)}, the secondary bus of ${bridgeBdf}`);
      return false;
    }
    const bus = children[0]!.bus;
    if (bus <= bridge.bus) {
      this.problem(path, `secondary bus ${hex(bus)} of ${bridgeBdf} must be above its own bus ${hex(bridge.bus)}`);
      return false;
    }
    return this.#claimBus(bridge.domain, bus, path);
  }

  #genericBars(bars: readonly GenericBarSpec[], path: string): void {
    const used = new Map<number, number>();
    bars.forEach((bar, i) => {
      const at = `${path}[${i}]`;
      const slots = bar.bits === 64 ? [bar.index, bar.index + 1] : [bar.index];
      for (const slot of slots) {
        if (slot > 5) {
          this.problem(`${at}.index`, `a 64-bit BAR takes two registers: index ${bar.index} leaves no room for the upper half`);
        } else if (used.has(slot)) {
          this.problem(`${at}.index`, `BAR register ${slot} is already used by bars[${used.get(slot)}]`);
        } else {
          used.set(slot, i);
        }
      }
      if (bar.space === 'io') {
        // I/O BARs are 32-bit, never prefetchable, and at most 256 bytes (PCI Local Bus 6.2.5.1).
        if (bar.bits === 64 || bar.prefetchable) {
          this.problem(at, 'an I/O BAR is neither 64-bit nor prefetchable');
        }
        if (bar.size > 256) {
          this.problem(`${at}.size`, `an I/O BAR is 4..256 bytes, not ${bar.size}`);
        }
      } else {
        if (bar.size < 16) {
          this.problem(`${at}.size`, `a memory BAR is at least 16 bytes, not ${bar.size}`);
        }
        if (bar.bits === 32 && bar.size > 2 ** 31) {
          this.problem(`${at}.size`, `a 32-bit memory BAR is at most 2 GiB; use bits: 64`);
        }
      }
      if (bar.window !== undefined) this.#barWindow(bar, bar.window, at);
    });
  }

  /** A memory window: in a memory BAR of scratch registers, whole pages (vfio mmaps and exports pages) inside the BAR. */
  #barWindow(bar: GenericBarSpec, window: { offset: number; length: number }, at: string): void {
    const { offset, length } = window;
    if (bar.space === 'io') {
      this.problem(`${at}.window`, 'an I/O BAR has no memory window');
    } else if (bar.size > MAX_WINDOWED_BAR_SIZE) {
      this.problem(`${at}.size`, `a BAR with a memory window is at most ${MAX_WINDOWED_BAR_SIZE} bytes, not ${bar.size}`);
    }
    if (offset % PAGE !== 0 || length % PAGE !== 0) {
      this.problem(`${at}.window`, `offset ${hex(offset)} and length ${hex(length)} must be multiples of the ${PAGE}-byte page`);
    } else if (offset + length > bar.size) {
      this.problem(`${at}.window`, `[${hex(offset)}, +${hex(length)}) runs past the ${bar.size}-byte BAR`);
    }
  }

  #checkWindows(windows: Record<'mmio32' | 'mmio64' | 'io', AddressWindow>, path: string): void {
    const { mmio32, mmio64, io } = windows;
    if (mmio32.base + mmio32.size > FOUR_GIB) {
      this.problem(`${path}.mmio32`, `window ${hex(mmio32.base)}+${hex(mmio32.size)} must end below 4 GiB`);
    }
    if (mmio64.base < FOUR_GIB || mmio64.base + mmio64.size > Number.MAX_SAFE_INTEGER) {
      this.problem(`${path}.mmio64`, `window must lie between 4 GiB and 2^53 (JS numbers are exact up to there)`);
    }
    if (io.base + io.size > FOUR_GIB) {
      this.problem(`${path}.io`, `I/O window must end below 4 GiB`);
    }
    for (const [index, other] of this.hostBridges.entries()) {
      for (const kind of ['mmio32', 'mmio64', 'io'] as const) {
        const a = windows[kind];
        const b = other[kind];
        if (a.base < b.base + b.size && b.base < a.base + a.size) {
          this.problem(`${path}.${kind}`, `window overlaps hostBridges[${index}].${kind} (${other.name})`);
        }
      }
    }
  }

  #node(bdf: string, path: string, role: NodeRole, parentBdf: string | undefined, hostBridge: string, acs: number): void {
    const previous = this.#bdfs.get(bdf);
    if (previous !== undefined) {
      this.problem(path, `${bdf} is already used at ${previous}`);
      return;
    }
    this.#bdfs.set(bdf, path);
    this.nodes.push({ bdf, role, parentBdf, hostBridge, acsCtrl: acs });
  }

  #claimName(name: string, path: string): void {
    const previous = this.#names.get(name);
    if (previous !== undefined) {
      this.problem(path, `name "${name}" is already used at ${previous}`);
    } else {
      this.#names.set(name, path);
    }
  }

  #claimBus(domain: number, bus: number, path: string): boolean {
    const key = `${domain}:${bus}`;
    const previous = this.#buses.get(key);
    if (previous !== undefined) {
      this.problem(path, `bus ${hex(bus)} of domain ${hex(domain)} is already used at ${previous}`);
      return false;
    }
    this.#buses.set(key, path);
    return true;
  }
}

/** Only the windows the file gives, so spreading them over the defaults keeps the rest. */
function definedWindows(spec: HostBridgeSpec): Partial<Record<'mmio32' | 'mmio64' | 'io', AddressWindow>> {
  return Object.fromEntries(
    (['mmio32', 'mmio64', 'io'] as const).filter((kind) => spec[kind] !== undefined).map((kind) => [kind, spec[kind]]),
  );
}

/** Builds the hierarchy from a schema-validated spec; EINVAL lists every problem with its field path. */
export function buildTopology(spec: TopologySpec): Topology {
  const builder = new TopologyBuilder();
  spec.hostBridges.forEach((bridge, index) => builder.hostBridge(bridge, index));
  if (builder.problems.length > 0) {
    throw errno('EINVAL', `invalid topology: ${builder.problems.join('; ')}`);
  }
  return new Topology(builder.hostBridges, builder.switches, builder.nodes, builder.functions);
}
