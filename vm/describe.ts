// The guest's view of a PCI function, as `vfio-user vm` prints it: IDs, BARs,
// interrupts (INTx line, MSI or MSI-X with the vectors in use) and the bound
// driver. Works from the report guest-init.sh prints; pure functions.
import type { PciDevice, PciResource } from './report.js';

// Linux IORESOURCE_* flags in sysfs `resource`.
const IORESOURCE_IO = 0x100n;
const IORESOURCE_MEM = 0x200n;
const IORESOURCE_PREFETCH = 0x2000n;
const IORESOURCE_MEM_64 = 0x100000n;

/** The guest's PCI address of the device attached from the i-th socket (0-based). */
export function bdfOfSocket(index: number): string {
  return `0000:00:${(index + 1).toString(16).padStart(2, '0')}.0`;
}

/** Interrupt capabilities found in a function's config space. */
export interface IrqCapabilities {
  /** MSI capability present; `msiEnabled` = the guest turned it on. */
  msi: boolean;
  msiEnabled: boolean;
  msix: boolean;
  msixEnabled: boolean;
  /** Interrupt pin register (0 = none, 1 = INTA ...). */
  pin: number;
}

/** Walks the capability list of a config space dump (bounded: a looping list ends after 48 steps). */
export function irqCapabilities(config: Buffer): IrqCapabilities {
  const caps: IrqCapabilities = { msi: false, msiEnabled: false, msix: false, msixEnabled: false, pin: config[0x3d] ?? 0 };
  const status = config.length >= 8 ? config.readUInt16LE(6) : 0;
  if ((status & 0x10) === 0 || config.length < 0x40) return caps;
  let ptr = config[0x34]! & 0xfc;
  for (let steps = 0; ptr >= 0x40 && ptr + 4 <= config.length && steps < 48; steps++) {
    const id = config[ptr]!;
    const control = config.readUInt16LE(ptr + 2);
    if (id === 0x05) {
      caps.msi = true;
      caps.msiEnabled = (control & 1) !== 0;
    } else if (id === 0x11) {
      caps.msix = true;
      caps.msixEnabled = (control & 0x8000) !== 0;
    }
    ptr = config[ptr + 1]! & 0xfc;
  }
  return caps;
}

function hex(n: number, width: number): string {
  return Number.isFinite(n) ? n.toString(16).padStart(width, '0') : '?'.repeat(width);
}

function size(bytes: bigint): string {
  for (const [unit, shift] of [['G', 30n], ['M', 20n], ['K', 10n]] as const) {
    if (bytes >= 1n << shift && bytes % (1n << shift) === 0n) return `${bytes >> shift}${unit}`;
  }
  return String(bytes);
}

function describeResource(r: PciResource): string {
  const name = r.index <= 5 ? `BAR${r.index}` : r.index === 6 ? 'ROM' : `window ${r.index}`;
  const len = r.end - r.start + 1n;
  if (r.flags & IORESOURCE_IO) return `${name}: I/O ports at 0x${r.start.toString(16)} [size ${size(len)}]`;
  const kind = [(r.flags & IORESOURCE_MEM_64) !== 0n ? '64-bit' : '32-bit', (r.flags & IORESOURCE_PREFETCH) !== 0n ? 'prefetchable' : 'non-prefetchable'];
  const what = r.flags & IORESOURCE_MEM ? 'memory' : 'resource';
  return `${name}: ${what} at 0x${r.start.toString(16)} [size ${size(len)}] ${kind.join(', ')}`;
}

/** The interrupt line of the view: what the bound driver uses. */
export function describeIrq(d: PciDevice): string {
  const caps = irqCapabilities(d.config);
  const offered = [caps.pin ? `INT${String.fromCharCode(0x40 + caps.pin)}` : null, caps.msi ? 'MSI' : null, caps.msix ? 'MSI-X' : null].filter(Boolean).join(', ');
  const n = d.msiIrqs.length;
  let inUse: string;
  if (caps.msixEnabled) inUse = `MSI-X, ${n} vector${n === 1 ? '' : 's'} (IRQ ${d.msiIrqs.join(' ')})`;
  else if (caps.msiEnabled) inUse = `MSI, ${n} vector${n === 1 ? '' : 's'} (IRQ ${d.msiIrqs.join(' ')})`;
  else if (caps.pin && d.enable > 0) inUse = `INTx, IRQ ${d.irq}`;
  else inUse = 'none enabled';
  return `IRQ: ${inUse}; offers ${offered || 'none'}`;
}

/** Multi-line human view of one function; `origin` (e.g. the socket) is shown in the title. */
export function describeDevice(d: PciDevice, origin?: string): string {
  const lines = [
    `${d.bdf} [${hex(d.vendor, 4)}:${hex(d.device, 4)}] class ${hex(d.class, 6)} rev ${hex(d.revision, 2)} ` +
      `subsystem [${hex(d.subsystemVendor, 4)}:${hex(d.subsystemDevice, 4)}]${origin ? `  <- ${origin}` : ''}`,
  ];
  for (const r of d.resources) lines.push(`  ${describeResource(r)}`);
  lines.push(`  ${describeIrq(d)}`);
  lines.push(`  driver: ${d.driver ?? 'none bound'}${d.modalias ? ` (modalias ${d.modalias})` : ''}`);
  return lines.join('\n');
}
