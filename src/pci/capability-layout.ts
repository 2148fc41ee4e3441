// Where capabilities go in configuration space: their sizes and IDs, and
// the placement of the standard and extended lists.
import * as C from './constants.js';
import { invalid } from './description-checks.js';
import type { CapabilityDescription, CapabilityInfo, ExtendedCapabilityDescription } from './types.js';

/** A capability with its place in config space and the description it came from. */
export interface PlacedCapability extends CapabilityInfo {
  desc: CapabilityDescription | ExtendedCapabilityDescription;
}

/** Bytes a standard capability takes. */
export function capSize(c: CapabilityDescription): number {
  switch (c.type) {
    case 'pm':
      return C.PCI_PM_SIZEOF;
    case 'msi': {
      const a64 = c.address64 !== false;
      const dataOff = a64 ? 12 : 8;
      return c.perVectorMasking ? dataOff + 12 : dataOff + 2;
    }
    case 'msix':
      return C.PCI_MSIX_SIZEOF;
    case 'pcie':
      return C.PCI_EXP_SIZEOF;
    case 'vendor':
      return 3 + c.data.length;
  }
}

/** Bytes an extended capability takes. */
export function extCapSize(c: ExtendedCapabilityDescription): number {
  return c.type === 'dsn' ? 12 : 8 + c.data.length;
}

/** Standard capability IDs by description type. */
export const CAP_IDS: Record<CapabilityDescription['type'], number> = {
  pm: C.PCI_CAP_ID_PM,
  msi: C.PCI_CAP_ID_MSI,
  msix: C.PCI_CAP_ID_MSIX,
  pcie: C.PCI_CAP_ID_EXP,
  vendor: C.PCI_CAP_ID_VNDR,
};
/** Extended capability IDs by description type. */
export const EXT_CAP_IDS: Record<ExtendedCapabilityDescription['type'], number> = {
  dsn: C.PCI_EXT_CAP_ID_DSN,
  vendor: C.PCI_EXT_CAP_ID_VNDR,
};

/**
 * Place capabilities: explicit offsets first (checked), then the rest
 * first-fit from `start`, dword aligned. Returns them sorted by offset,
 * which is also the order of the linked list.
 */
export function place<D extends { offset?: number; readOnly?: boolean; callback?: boolean; type: string }>(
  descs: D[],
  sizeOf: (d: D) => number,
  idOf: (d: D) => number,
  start: number,
  end: number,
  extended: boolean,
): PlacedCapability[] {
  const placed: PlacedCapability[] = [];
  const what = extended ? 'extended capability' : 'capability';
  const overlaps = (off: number, size: number): PlacedCapability | undefined =>
    placed.find((p) => off < p.offset + alignUp(p.size) && p.offset < off + alignUp(size));
  const make = (d: D, offset: number, size: number): PlacedCapability => ({
    id: idOf(d),
    offset,
    size,
    extended,
    type: d.type as CapabilityInfo['type'],
    readOnly: d.readOnly === true,
    callback: d.callback === true,
    desc: d as unknown as PlacedCapability['desc'],
  });
  for (const d of descs) {
    if (d.offset === undefined) continue;
    const size = sizeOf(d);
    const off = d.offset;
    if (!Number.isInteger(off) || off % 4 !== 0) throw invalid(`${what} ${d.type}: offset ${off} is not dword aligned`);
    if (off < start || off + size > end) {
      throw invalid(`${what} ${d.type}: [0x${off.toString(16)}, +${size}) is outside [0x${start.toString(16)}, 0x${end.toString(16)})`);
    }
    const hit = overlaps(off, size);
    if (hit) {
      throw invalid(`${what} ${d.type} at 0x${off.toString(16)} overlaps ${hit.type} at 0x${hit.offset.toString(16)}`);
    }
    placed.push(make(d, off, size));
  }
  for (const d of descs) {
    if (d.offset !== undefined) continue;
    const size = sizeOf(d);
    let off = start;
    for (;;) {
      if (off + size > end) throw invalid(`no room for ${what} ${d.type} (${size} bytes)`);
      const hit = overlaps(off, size);
      if (!hit) break;
      off = hit.offset + alignUp(hit.size);
    }
    placed.push(make(d, off, size));
  }
  placed.sort((a, b) => a.offset - b.offset);
  return placed;
}

function alignUp(n: number): number {
  return (n + 3) & ~3;
}

/** What a capability looks like to users (without its description). */
export function publicInfo(c: PlacedCapability): CapabilityInfo {
  return { id: c.id, offset: c.offset, size: c.size, extended: c.extended, type: c.type, readOnly: c.readOnly, callback: c.callback };
}
