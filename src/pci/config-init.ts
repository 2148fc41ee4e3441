// Initial register values and write masks of the BARs and of each capability
// type. A BAR's mask is ~(size - 1) minus its type bits, split over two
// dwords for 64-bit BARs, so BAR sizing falls out of the masked write.
import type { PlacedCapability } from './capability-layout.js';
import type { ConfigRegisters } from './config-registers.js';
import * as C from './constants.js';
import type { ResolvedBar } from './description-checks.js';
import type { CapabilityDescription, ExtendedCapabilityDescription } from './types.js';

/** Writes the BARs' type bits and sizing masks, and the ROM BAR's. */
export function initBars(r: ConfigRegisters, bars: readonly (ResolvedBar | undefined)[], romSize: number): void {
  for (const bar of bars) {
    if (!bar) continue;
    const off = C.PCI_BASE_ADDRESS_0 + 4 * bar.index;
    const mask = ~(bar.size - 1n);
    if (bar.kind === 'io') {
      r.set32(off, C.PCI_BAR_SPACE_IO);
      r.setMask32(off, Number(mask & 0xfffffffcn));
    } else {
      r.set32(off, (bar.kind === 'mem64' ? C.PCI_BAR_MEM_TYPE_64 : 0) | (bar.prefetchable ? C.PCI_BAR_MEM_PREFETCH : 0));
      r.setMask32(off, Number(mask & 0xfffffff0n));
      if (bar.kind === 'mem64') r.setMask32(off + 4, Number((mask >> 32n) & 0xffffffffn));
    }
  }
  if (romSize) r.setMask32(C.PCI_ROM_ADDRESS, ((~(romSize - 1) & C.PCI_ROM_ADDRESS_MASK) | C.PCI_ROM_ENABLE) >>> 0);
}

/** Writes a standard capability's initial registers and masks (its header is written by the caller). */
export function initCapability(r: ConfigRegisters, cap: PlacedCapability): void {
  const o = cap.offset;
  const d = cap.desc as CapabilityDescription;
  switch (d.type) {
    case 'pm': {
      const pme = d.pmeSupport ?? 0;
      r.set16(o + C.PCI_PM_PMC, (d.version ?? 3) | (d.d1 ? 1 << 9 : 0) | (d.d2 ? 1 << 10 : 0) | (pme << 11));
      r.set16(o + C.PCI_PM_CTRL, d.noSoftReset === false ? 0 : C.PCI_PM_CTRL_NO_SOFT_RESET);
      r.setMask16(o + C.PCI_PM_CTRL, C.PCI_PM_CTRL_STATE_MASK | (pme ? C.PCI_PM_CTRL_PME_ENABLE : 0));
      if (pme) r.setW1c16(o + C.PCI_PM_CTRL, C.PCI_PM_CTRL_PME_STATUS);
      return;
    }
    case 'msi': {
      const a64 = d.address64 !== false;
      const mmc = Math.log2(d.vectors);
      r.set16(o + C.PCI_MSI_FLAGS, (mmc << 1) | (a64 ? C.PCI_MSI_FLAGS_64BIT : 0) | (d.perVectorMasking ? C.PCI_MSI_FLAGS_MASKBIT : 0));
      r.setMask16(o + C.PCI_MSI_FLAGS, C.PCI_MSI_FLAGS_ENABLE | C.PCI_MSI_FLAGS_QSIZE);
      r.setMask32(o + C.PCI_MSI_ADDRESS_LO, 0xfffffffc);
      if (a64) r.setMask32(o + 8, 0xffffffff);
      const dataOff = a64 ? 12 : 8;
      r.setMask16(o + dataOff, 0xffff);
      if (d.perVectorMasking) {
        r.setMask32(o + dataOff + 4, d.vectors === 32 ? 0xffffffff : (1 << d.vectors) - 1);
      }
      return;
    }
    case 'msix':
      r.set16(o + C.PCI_MSIX_FLAGS, d.tableSize - 1);
      r.setMask16(o + C.PCI_MSIX_FLAGS, C.PCI_MSIX_FLAGS_ENABLE | C.PCI_MSIX_FLAGS_MASKALL);
      r.set32(o + C.PCI_MSIX_TABLE, (d.tableOffset | d.tableBar) >>> 0);
      r.set32(o + C.PCI_MSIX_PBA, (d.pbaOffset | d.pbaBar) >>> 0);
      return;
    case 'pcie': {
      const speed = d.linkSpeed ?? 1;
      const width = d.linkWidth ?? 1;
      r.set16(o + C.PCI_EXP_FLAGS, 2 | ((d.deviceType ?? 0) << 4));
      r.set32(
        o + C.PCI_EXP_DEVCAP,
        ((d.maxPayloadSupported ?? 0) | (d.extendedTag ? C.PCI_EXP_DEVCAP_EXT_TAG : 0) | C.PCI_EXP_DEVCAP_RBER | (d.flr ? C.PCI_EXP_DEVCAP_FLR : 0)) >>> 0,
      );
      // Defaults per spec: relaxed ordering and no-snoop enabled, MRRS 512.
      r.set16(o + C.PCI_EXP_DEVCTL, 0x2810);
      // Error reporting enables, relaxed ordering, MPS, ext tag, no snoop, MRRS, FLR.
      r.setMask16(o + C.PCI_EXP_DEVCTL, 0x000f | 0x0010 | 0x00e0 | (d.extendedTag ? 0x0100 : 0) | 0x0800 | 0x7000 | (d.flr ? C.PCI_EXP_DEVCTL_BCR_FLR : 0));
      r.setW1c16(o + C.PCI_EXP_DEVSTA, 0x000f);
      r.set32(o + C.PCI_EXP_LNKCAP, speed | (width << 4));
      // ASPM control, RCB, common clock, extended synch.
      r.setMask16(o + C.PCI_EXP_LNKCTL, 0x00cb);
      r.set16(o + C.PCI_EXP_LNKSTA, speed | (width << 4));
      r.set32(o + C.PCI_EXP_DEVCAP2, 0x10); // completion timeout disable supported
      r.setMask16(o + C.PCI_EXP_DEVCTL2, 0x0010);
      r.set32(o + C.PCI_EXP_LNKCAP2, ((1 << speed) - 1) << 1);
      r.set16(o + C.PCI_EXP_LNKCTL2, speed);
      r.setMask16(o + C.PCI_EXP_LNKCTL2, 0x000f);
      return;
    }
    case 'vendor':
      r.bytes[o + 2] = cap.size;
      r.bytes.set(d.data, o + 3);
      if (d.writable === true) r.wmask.fill(0xff, o + 3, o + cap.size);
      else if (d.writable instanceof Uint8Array) r.wmask.set(d.writable, o + 3);
      return;
  }
}

/** Writes an extended capability's initial registers and masks after its header. */
export function initExtCapability(r: ConfigRegisters, cap: PlacedCapability): void {
  const o = cap.offset;
  const d = cap.desc as ExtendedCapabilityDescription;
  if (d.type === 'dsn') {
    r.set32(o + 4, Number(d.serial & 0xffffffffn));
    r.set32(o + 8, Number(d.serial >> 32n));
    return;
  }
  r.set32(o + 4, (d.vsecId | ((d.vsecRev ?? 0) << 16) | (cap.size << 20)) >>> 0);
  r.bytes.set(d.data, o + 8);
  if (d.writable === true) r.wmask.fill(0xff, o + 8, o + cap.size);
  else if (d.writable instanceof Uint8Array) r.wmask.set(d.writable, o + 8);
}
