// A type-0 PCI configuration space built from a device description.
//
// Every byte has a write mask (`wmask`: bits a guest write may change) and a
// write-1-to-clear mask (`w1cmask`). A write of any size or alignment is
// applied byte by byte:
//     b = (b & ~wmask) | (v & wmask);  b &= ~(v & w1cmask)
// Read-only registers simply have a zero mask, so writes to them are ignored
// rather than refused (QEMU forwards every guest config write). BAR sizing
// falls out of the same rule: a BAR's mask is ~(size - 1) minus its type bits,
// split over two dwords for 64-bit BARs. A few registers need a fix-up after
// the masked write (self-clearing FLR, MSI MME clamp, unsupported D-states),
// and state changes are reported through hooks.

import { ProtocolError, VfioUserError } from '../protocol/errors.js';
import { Errno } from '../protocol/errno.js';
import * as C from './constants.js';
import type {
  BarDescription,
  BarKind,
  CapabilityDescription,
  CapabilityInfo,
  ClassCode,
  ExtendedCapabilityDescription,
  MsiState,
  MsixControl,
  PciConfigHooks,
  PciDeviceDescription,
} from './types.js';

const INVALID = 'ERR_VFIO_USER_INVALID_DEVICE';

function invalid(msg: string): VfioUserError {
  return new VfioUserError(INVALID, `invalid PCI device description: ${msg}`);
}

function checkUint(value: unknown, bits: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw invalid(`${what} must be an integer in [0, 2^${bits}), got ${String(value)}`);
  }
  return value;
}

function isPow2(n: bigint): boolean {
  return n > 0n && (n & (n - 1n)) === 0n;
}

/** A BAR after validation. */
export interface ResolvedBar {
  index: number;
  kind: BarKind;
  size: bigint;
  prefetchable: boolean;
}

interface PlacedCapability extends CapabilityInfo {
  desc: CapabilityDescription | ExtendedCapabilityDescription;
}

function normalizeClass(cc: ClassCode | number): ClassCode {
  if (typeof cc === 'number') {
    checkUint(cc, 24, 'classCode');
    return { base: cc >>> 16, sub: (cc >>> 8) & 0xff, progIf: cc & 0xff };
  }
  if (cc === null || typeof cc !== 'object') throw invalid('classCode must be a number or {base, sub, progIf}');
  return {
    base: checkUint(cc.base, 8, 'classCode.base'),
    sub: checkUint(cc.sub, 8, 'classCode.sub'),
    progIf: checkUint(cc.progIf, 8, 'classCode.progIf'),
  };
}

function resolveBars(bars: (BarDescription | undefined)[] | undefined): (ResolvedBar | undefined)[] {
  const out: (ResolvedBar | undefined)[] = [undefined, undefined, undefined, undefined, undefined, undefined];
  if (bars === undefined) return out;
  if (!Array.isArray(bars) || bars.length > 6) throw invalid('bars must be an array of at most 6 entries');
  for (let i = 0; i < bars.length; i++) {
    const b = bars[i];
    if (b === undefined || b === null) continue;
    const { kind } = b;
    if (kind !== 'io' && kind !== 'mem32' && kind !== 'mem64') throw invalid(`BAR${i}: unknown kind ${String(kind)}`);
    let size: bigint;
    if (typeof b.size === 'bigint') size = b.size;
    else if (typeof b.size === 'number' && Number.isSafeInteger(b.size)) size = BigInt(b.size);
    else throw invalid(`BAR${i}: size must be an integer`);
    if (!isPow2(size)) throw invalid(`BAR${i}: size ${size} is not a power of two`);
    const min = kind === 'io' ? 4n : 16n;
    const max = kind === 'io' ? 1n << 16n : kind === 'mem32' ? 1n << 31n : 1n << 63n;
    if (size < min) throw invalid(`BAR${i}: size ${size} is below the minimum ${min} for ${kind}`);
    if (size > max) throw invalid(`BAR${i}: size ${size} exceeds the maximum ${max} for ${kind}`);
    if (kind === 'io' && b.prefetchable) throw invalid(`BAR${i}: an I/O BAR cannot be prefetchable`);
    if (kind === 'mem64') {
      if (i % 2 !== 0) throw invalid(`BAR${i}: a 64-bit BAR must take an even index`);
      if (bars[i + 1] !== undefined && bars[i + 1] !== null) {
        throw invalid(`BAR${i}: a 64-bit BAR needs BAR${i + 1} empty`);
      }
    }
    out[i] = { index: i, kind, size, prefetchable: b.prefetchable === true };
  }
  return out;
}

function capSize(c: CapabilityDescription): number {
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

function extCapSize(c: ExtendedCapabilityDescription): number {
  return c.type === 'dsn' ? 12 : 8 + c.data.length;
}

const CAP_IDS: Record<CapabilityDescription['type'], number> = {
  pm: C.PCI_CAP_ID_PM,
  msi: C.PCI_CAP_ID_MSI,
  msix: C.PCI_CAP_ID_MSIX,
  pcie: C.PCI_CAP_ID_EXP,
  vendor: C.PCI_CAP_ID_VNDR,
};
const EXT_CAP_IDS: Record<ExtendedCapabilityDescription['type'], number> = {
  dsn: C.PCI_EXT_CAP_ID_DSN,
  vendor: C.PCI_EXT_CAP_ID_VNDR,
};

/**
 * Place capabilities: explicit offsets first (checked), then the rest
 * first-fit from `start`, dword aligned. Returns them sorted by offset,
 * which is also the order of the linked list.
 */
function place<D extends { offset?: number; readOnly?: boolean; callback?: boolean; type: string }>(
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

function validateCapability(c: CapabilityDescription, bars: (ResolvedBar | undefined)[]): void {
  switch (c.type) {
    case 'pm':
      if (c.version !== undefined) checkUint(c.version, 3, 'PM version');
      if (c.pmeSupport !== undefined) checkUint(c.pmeSupport, 5, 'PM pmeSupport');
      return;
    case 'msi':
      if (![1, 2, 4, 8, 16, 32].includes(c.vectors)) throw invalid(`MSI vectors must be 1, 2, 4, 8, 16 or 32, got ${c.vectors}`);
      return;
    case 'msix': {
      if (!Number.isInteger(c.tableSize) || c.tableSize < 1 || c.tableSize > 2048) {
        throw invalid(`MSI-X tableSize must be in 1..2048, got ${c.tableSize}`);
      }
      const tableBytes = BigInt(c.tableSize * C.PCI_MSIX_ENTRY_SIZE);
      const pbaBytes = BigInt(Math.ceil(c.tableSize / 64) * 8);
      const check = (bir: number, off: number, len: bigint, what: string): void => {
        checkUint(bir, 3, `MSI-X ${what} BAR`);
        if (bir > 5) throw invalid(`MSI-X ${what} BAR must be 0..5`);
        const bar = bars[bir];
        if (!bar || bar.kind === 'io') throw invalid(`MSI-X ${what} BAR${bir} must be a memory BAR`);
        checkUint(off, 32, `MSI-X ${what} offset`);
        if (off % 8 !== 0) throw invalid(`MSI-X ${what} offset must be 8-byte aligned`);
        if (BigInt(off) + len > bar.size) throw invalid(`MSI-X ${what} does not fit in BAR${bir}`);
      };
      check(c.tableBar, c.tableOffset, tableBytes, 'table');
      check(c.pbaBar, c.pbaOffset, pbaBytes, 'PBA');
      if (
        c.tableBar === c.pbaBar &&
        c.tableOffset < c.pbaOffset + Number(pbaBytes) &&
        c.pbaOffset < c.tableOffset + Number(tableBytes)
      ) {
        throw invalid('MSI-X table and PBA overlap');
      }
      return;
    }
    case 'pcie':
      if (c.deviceType !== undefined && c.deviceType !== 0 && c.deviceType !== 9) {
        throw invalid('PCIe deviceType must be 0 (endpoint) or 9 (RC integrated endpoint)');
      }
      if (c.maxPayloadSupported !== undefined && (checkUint(c.maxPayloadSupported, 3, 'maxPayloadSupported') > 5)) {
        throw invalid('maxPayloadSupported must be 0..5');
      }
      if (c.linkSpeed !== undefined && (checkUint(c.linkSpeed, 4, 'linkSpeed') < 1 || c.linkSpeed > 6)) {
        throw invalid('linkSpeed must be 1..6');
      }
      if (c.linkWidth !== undefined && (checkUint(c.linkWidth, 6, 'linkWidth') < 1 || c.linkWidth > 32)) {
        throw invalid('linkWidth must be 1..32');
      }
      return;
    case 'vendor':
      if (!(c.data instanceof Uint8Array)) throw invalid('vendor capability data must be a Uint8Array');
      if (c.data.length > 253) throw invalid('vendor capability data is longer than 253 bytes');
      if (c.writable instanceof Uint8Array && c.writable.length !== c.data.length) {
        throw invalid('vendor capability writable mask must have the length of data');
      }
      return;
    default:
      throw invalid(`unknown capability type ${String((c as { type: unknown }).type)}`);
  }
}

function validateExtCapability(c: ExtendedCapabilityDescription): void {
  switch (c.type) {
    case 'dsn':
      if (typeof c.serial !== 'bigint' || c.serial < 0n || c.serial >= 1n << 64n) {
        throw invalid('DSN serial must be a 64-bit bigint');
      }
      return;
    case 'vendor':
      checkUint(c.vsecId, 16, 'vsecId');
      if (c.vsecRev !== undefined) checkUint(c.vsecRev, 4, 'vsecRev');
      if (!(c.data instanceof Uint8Array)) throw invalid('vendor extended capability data must be a Uint8Array');
      if (8 + c.data.length > 0xfff) throw invalid('vendor extended capability is longer than 4095 bytes');
      if (c.writable instanceof Uint8Array && c.writable.length !== c.data.length) {
        throw invalid('vendor extended capability writable mask must have the length of data');
      }
      return;
    default:
      throw invalid(`unknown extended capability type ${String((c as { type: unknown }).type)}`);
  }
}

export class PciConfigSpace {
  /** 256, or 4096 for PCI Express. */
  readonly size: number;
  /** The live register contents. Mutating it bypasses write semantics. */
  readonly bytes: Uint8Array;
  /** Hooks the owner installs; may be replaced at any time. */
  hooks: PciConfigHooks;

  private readonly wmask: Uint8Array;
  private readonly w1cmask: Uint8Array;
  private readonly initial: Uint8Array;
  private readonly bars: (ResolvedBar | undefined)[];
  private readonly romSize: number;
  private readonly caps: PlacedCapability[];
  private readonly extCaps: PlacedCapability[];

  constructor(desc: PciDeviceDescription, hooks: PciConfigHooks = {}) {
    if (desc === null || typeof desc !== 'object') throw invalid('description must be an object');
    this.hooks = hooks;
    this.size = desc.express ? C.PCIE_CONFIG_SIZE : C.PCI_CONFIG_SIZE;
    this.bytes = new Uint8Array(this.size);
    this.wmask = new Uint8Array(this.size);
    this.w1cmask = new Uint8Array(this.size);

    const vendorId = checkUint(desc.vendorId, 16, 'vendorId');
    if (vendorId === 0xffff) throw invalid('vendorId 0xffff means "no device"');
    const deviceId = checkUint(desc.deviceId, 16, 'deviceId');
    const cls = normalizeClass(desc.classCode);
    const revision = checkUint(desc.revision ?? 0, 8, 'revision');
    const ssvid = checkUint(desc.subsystemVendorId ?? 0, 16, 'subsystemVendorId');
    const ssid = checkUint(desc.subsystemId ?? 0, 16, 'subsystemId');
    this.bars = resolveBars(desc.bars);
    const romSize = desc.rom?.size ?? 0;
    if (romSize !== 0) {
      checkUint(romSize, 32, 'rom.size');
      if (!isPow2(BigInt(romSize)) || romSize < 2048 || romSize > 2 ** 31) {
        throw invalid('rom.size must be 0 or a power of two in [2 KiB, 2 GiB]');
      }
    }
    this.romSize = romSize;

    const capDescs = desc.capabilities ?? [];
    const extDescs = desc.extendedCapabilities ?? [];
    if (!Array.isArray(capDescs) || !Array.isArray(extDescs)) throw invalid('capabilities must be arrays');
    for (const c of capDescs) validateCapability(c, this.bars);
    for (const t of ['pm', 'msi', 'msix', 'pcie'] as const) {
      if (capDescs.filter((c) => c.type === t).length > 1) throw invalid(`more than one ${t} capability`);
    }
    if (extDescs.length > 0 && !desc.express) throw invalid('extended capabilities need express: true');
    for (const c of extDescs) validateExtCapability(c);
    if (extDescs.filter((c) => c.type === 'dsn').length > 1) throw invalid('more than one DSN capability');

    this.caps = place(capDescs, capSize, (d) => CAP_IDS[d.type], C.PCI_STD_HEADER_SIZE, C.PCI_CONFIG_SIZE, false);
    this.extCaps = place(extDescs, extCapSize, (d) => EXT_CAP_IDS[d.type], C.PCI_EXT_CAP_START, this.size, true);
    if (this.extCaps.length > 0 && this.extCaps[0]!.offset !== C.PCI_EXT_CAP_START) {
      throw invalid('the first extended capability must be at 0x100');
    }

    // Header.
    this.set16(C.PCI_VENDOR_ID, vendorId);
    this.set16(C.PCI_DEVICE_ID, deviceId);
    this.setMask16(C.PCI_COMMAND, C.PCI_COMMAND_WRITABLE);
    this.setW1c16(C.PCI_STATUS, C.PCI_STATUS_W1C);
    this.bytes[C.PCI_REVISION_ID] = revision;
    this.bytes[C.PCI_CLASS_PROG] = cls.progIf;
    this.bytes[C.PCI_CLASS_DEVICE] = cls.sub;
    this.bytes[C.PCI_CLASS_DEVICE + 1] = cls.base;
    this.wmask[C.PCI_CACHE_LINE_SIZE] = 0xff;
    this.wmask[C.PCI_LATENCY_TIMER] = 0xff;
    this.set16(C.PCI_SUBSYSTEM_VENDOR_ID, ssvid);
    this.set16(C.PCI_SUBSYSTEM_ID, ssid);
    this.wmask[C.PCI_INTERRUPT_LINE] = 0xff;
    if (desc.intxPin) this.bytes[C.PCI_INTERRUPT_PIN] = 1;

    for (const bar of this.bars) {
      if (!bar) continue;
      const off = C.PCI_BASE_ADDRESS_0 + 4 * bar.index;
      const mask = ~(bar.size - 1n);
      if (bar.kind === 'io') {
        this.set32(off, C.PCI_BAR_SPACE_IO);
        this.setMask32(off, Number(mask & 0xfffffffcn));
      } else {
        this.set32(off, (bar.kind === 'mem64' ? C.PCI_BAR_MEM_TYPE_64 : 0) | (bar.prefetchable ? C.PCI_BAR_MEM_PREFETCH : 0));
        this.setMask32(off, Number(mask & 0xfffffff0n));
        if (bar.kind === 'mem64') this.setMask32(off + 4, Number((mask >> 32n) & 0xffffffffn));
      }
    }
    if (romSize) this.setMask32(C.PCI_ROM_ADDRESS, ((~(romSize - 1) & C.PCI_ROM_ADDRESS_MASK) | C.PCI_ROM_ENABLE) >>> 0);

    // Capabilities.
    if (this.caps.length > 0) {
      this.bytes[C.PCI_CAPABILITY_LIST] = this.caps[0]!.offset;
      this.set16(C.PCI_STATUS, C.PCI_STATUS_CAP_LIST);
    }
    this.caps.forEach((cap, i) => {
      this.bytes[cap.offset] = cap.id;
      this.bytes[cap.offset + 1] = this.caps[i + 1]?.offset ?? 0;
      this.initCapability(cap);
      if (cap.readOnly) this.clearMasks(cap.offset, cap.size);
    });
    this.extCaps.forEach((cap, i) => {
      const next = this.extCaps[i + 1]?.offset ?? 0;
      this.set32(cap.offset, (cap.id | (1 << 16) | (next << 20)) >>> 0);
      this.initExtCapability(cap);
      if (cap.readOnly) this.clearMasks(cap.offset, cap.size);
    });

    this.initial = this.bytes.slice();
  }

  // ---- byte helpers -------------------------------------------------------

  private set16(off: number, v: number): void {
    this.bytes[off] = v & 0xff;
    this.bytes[off + 1] = (v >>> 8) & 0xff;
  }
  private set32(off: number, v: number): void {
    for (let i = 0; i < 4; i++) this.bytes[off + i] = (v >>> (8 * i)) & 0xff;
  }
  private get16(off: number): number {
    return this.bytes[off]! | (this.bytes[off + 1]! << 8);
  }
  private get32(off: number): number {
    return (this.bytes[off]! | (this.bytes[off + 1]! << 8) | (this.bytes[off + 2]! << 16) | (this.bytes[off + 3]! << 24)) >>> 0;
  }
  private setMask16(off: number, m: number): void {
    this.wmask[off] = m & 0xff;
    this.wmask[off + 1] = (m >>> 8) & 0xff;
  }
  private setMask32(off: number, m: number): void {
    for (let i = 0; i < 4; i++) this.wmask[off + i] = (m >>> (8 * i)) & 0xff;
  }
  private setW1c16(off: number, m: number): void {
    this.w1cmask[off] = m & 0xff;
    this.w1cmask[off + 1] = (m >>> 8) & 0xff;
  }
  private clearMasks(off: number, len: number): void {
    this.wmask.fill(0, off, off + len);
    this.w1cmask.fill(0, off, off + len);
  }

  private initCapability(cap: PlacedCapability): void {
    const o = cap.offset;
    const d = cap.desc as CapabilityDescription;
    switch (d.type) {
      case 'pm': {
        const pme = d.pmeSupport ?? 0;
        this.set16(o + C.PCI_PM_PMC, (d.version ?? 3) | (d.d1 ? 1 << 9 : 0) | (d.d2 ? 1 << 10 : 0) | (pme << 11));
        this.set16(o + C.PCI_PM_CTRL, d.noSoftReset === false ? 0 : C.PCI_PM_CTRL_NO_SOFT_RESET);
        this.setMask16(o + C.PCI_PM_CTRL, C.PCI_PM_CTRL_STATE_MASK | (pme ? C.PCI_PM_CTRL_PME_ENABLE : 0));
        if (pme) this.setW1c16(o + C.PCI_PM_CTRL, C.PCI_PM_CTRL_PME_STATUS);
        return;
      }
      case 'msi': {
        const a64 = d.address64 !== false;
        const mmc = Math.log2(d.vectors);
        this.set16(o + C.PCI_MSI_FLAGS, (mmc << 1) | (a64 ? C.PCI_MSI_FLAGS_64BIT : 0) | (d.perVectorMasking ? C.PCI_MSI_FLAGS_MASKBIT : 0));
        this.setMask16(o + C.PCI_MSI_FLAGS, C.PCI_MSI_FLAGS_ENABLE | C.PCI_MSI_FLAGS_QSIZE);
        this.setMask32(o + C.PCI_MSI_ADDRESS_LO, 0xfffffffc);
        if (a64) this.setMask32(o + 8, 0xffffffff);
        const dataOff = a64 ? 12 : 8;
        this.setMask16(o + dataOff, 0xffff);
        if (d.perVectorMasking) {
          this.setMask32(o + dataOff + 4, d.vectors === 32 ? 0xffffffff : (1 << d.vectors) - 1);
        }
        return;
      }
      case 'msix':
        this.set16(o + C.PCI_MSIX_FLAGS, d.tableSize - 1);
        this.setMask16(o + C.PCI_MSIX_FLAGS, C.PCI_MSIX_FLAGS_ENABLE | C.PCI_MSIX_FLAGS_MASKALL);
        this.set32(o + C.PCI_MSIX_TABLE, (d.tableOffset | d.tableBar) >>> 0);
        this.set32(o + C.PCI_MSIX_PBA, (d.pbaOffset | d.pbaBar) >>> 0);
        return;
      case 'pcie': {
        const speed = d.linkSpeed ?? 1;
        const width = d.linkWidth ?? 1;
        this.set16(o + C.PCI_EXP_FLAGS, 2 | ((d.deviceType ?? 0) << 4));
        this.set32(
          o + C.PCI_EXP_DEVCAP,
          ((d.maxPayloadSupported ?? 0) | (d.extendedTag ? C.PCI_EXP_DEVCAP_EXT_TAG : 0) | C.PCI_EXP_DEVCAP_RBER | (d.flr ? C.PCI_EXP_DEVCAP_FLR : 0)) >>> 0,
        );
        // Defaults per spec: relaxed ordering and no-snoop enabled, MRRS 512.
        this.set16(o + C.PCI_EXP_DEVCTL, 0x2810);
        // Error reporting enables, relaxed ordering, MPS, ext tag, no snoop, MRRS, FLR.
        this.setMask16(o + C.PCI_EXP_DEVCTL, 0x000f | 0x0010 | 0x00e0 | (d.extendedTag ? 0x0100 : 0) | 0x0800 | 0x7000 | (d.flr ? C.PCI_EXP_DEVCTL_BCR_FLR : 0));
        this.setW1c16(o + C.PCI_EXP_DEVSTA, 0x000f);
        this.set32(o + C.PCI_EXP_LNKCAP, speed | (width << 4));
        // ASPM control, RCB, common clock, extended synch.
        this.setMask16(o + C.PCI_EXP_LNKCTL, 0x00cb);
        this.set16(o + C.PCI_EXP_LNKSTA, speed | (width << 4));
        this.set32(o + C.PCI_EXP_DEVCAP2, 0x10); // completion timeout disable supported
        this.setMask16(o + C.PCI_EXP_DEVCTL2, 0x0010);
        this.set32(o + C.PCI_EXP_LNKCAP2, ((1 << speed) - 1) << 1);
        this.set16(o + C.PCI_EXP_LNKCTL2, speed);
        this.setMask16(o + C.PCI_EXP_LNKCTL2, 0x000f);
        return;
      }
      case 'vendor':
        this.bytes[o + 2] = cap.size;
        this.bytes.set(d.data, o + 3);
        if (d.writable === true) this.wmask.fill(0xff, o + 3, o + cap.size);
        else if (d.writable instanceof Uint8Array) this.wmask.set(d.writable, o + 3);
        return;
    }
  }

  private initExtCapability(cap: PlacedCapability): void {
    const o = cap.offset;
    const d = cap.desc as ExtendedCapabilityDescription;
    if (d.type === 'dsn') {
      this.set32(o + 4, Number(d.serial & 0xffffffffn));
      this.set32(o + 8, Number(d.serial >> 32n));
      return;
    }
    this.set32(o + 4, (d.vsecId | ((d.vsecRev ?? 0) << 16) | (cap.size << 20)) >>> 0);
    this.bytes.set(d.data, o + 8);
    if (d.writable === true) this.wmask.fill(0xff, o + 8, o + cap.size);
    else if (d.writable instanceof Uint8Array) this.wmask.set(d.writable, o + 8);
  }

  // ---- access -------------------------------------------------------------

  private checkRange(offset: number, count: number): void {
    if (!Number.isInteger(offset) || !Number.isInteger(count) || offset < 0 || count < 0 || offset + count > this.size) {
      throw new ProtocolError(Errno.EINVAL, `config space access [${offset}, +${count}) outside 0..${this.size}`);
    }
  }

  /** A copy of `count` bytes at `offset`. */
  read(offset: number, count: number): Uint8Array {
    this.checkRange(offset, count);
    return this.bytes.slice(offset, offset + count);
  }

  /** A guest write of any size and alignment; read-only bits are ignored. */
  write(offset: number, data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) throw new ProtocolError(Errno.EINVAL, 'config write data must be a Uint8Array');
    this.checkRange(offset, data.length);
    if (data.length === 0) return;
    const before = this.snapshot();
    for (let i = 0; i < data.length; i++) {
      const a = offset + i;
      const v = data[i]!;
      const wm = this.wmask[a]!;
      let b = (this.bytes[a]! & ~wm) | (v & wm);
      b &= ~(v & this.w1cmask[a]!);
      this.bytes[a] = b;
    }
    const flr = this.fixups(offset, data.length, before);
    if (flr) {
      // FLR returns the function to its power-on state; the owner hears about
      // every state change (BME off, MSI off...) and then about the FLR.
      this.bytes.set(this.initial);
    }
    this.report(before);
    if (flr) this.hooks.onFlr?.();
  }

  /** Restore power-on defaults (as after a reset), reporting state changes. */
  reset(): void {
    const before = this.snapshot();
    this.bytes.set(this.initial);
    this.report(before);
  }

  private overlaps(offset: number, len: number, start: number, size: number): boolean {
    return offset < start + size && start < offset + len;
  }

  /** Post-write corrections; returns true when an FLR was initiated. */
  private fixups(offset: number, len: number, before: Snapshot): boolean {
    let flr = false;
    for (const cap of this.caps) {
      if (cap.readOnly || !this.overlaps(offset, len, cap.offset, cap.size)) continue;
      const o = cap.offset;
      const d = cap.desc as CapabilityDescription;
      if (d.type === 'msi') {
        const ctl = this.get16(o + C.PCI_MSI_FLAGS);
        const mmc = (ctl & C.PCI_MSI_FLAGS_QMASK) >> 1;
        const mme = (ctl & C.PCI_MSI_FLAGS_QSIZE) >> 4;
        if (mme > mmc) this.set16(o + C.PCI_MSI_FLAGS, (ctl & ~C.PCI_MSI_FLAGS_QSIZE) | (mmc << 4));
      } else if (d.type === 'pm') {
        const csr = this.get16(o + C.PCI_PM_CTRL);
        const state = csr & C.PCI_PM_CTRL_STATE_MASK;
        if ((state === 1 && !d.d1) || (state === 2 && !d.d2)) {
          // Unsupported power state: the write to the field is ignored.
          this.set16(o + C.PCI_PM_CTRL, (csr & ~C.PCI_PM_CTRL_STATE_MASK) | (before.powerState ?? 0));
        }
      } else if (d.type === 'pcie' && d.flr) {
        const ctl = this.get16(o + C.PCI_EXP_DEVCTL);
        if (ctl & C.PCI_EXP_DEVCTL_BCR_FLR) {
          this.set16(o + C.PCI_EXP_DEVCTL, ctl & ~C.PCI_EXP_DEVCTL_BCR_FLR);
          flr = true;
        }
      }
    }
    return flr;
  }

  private snapshot(): Snapshot {
    return {
      command: this.command,
      bars: [0, 1, 2, 3, 4, 5, 6].map((i) => this.barRegister(i)),
      msi: this.msiState(),
      msix: this.msixControl(),
      powerState: this.powerState,
    };
  }

  private report(before: Snapshot): void {
    const h = this.hooks;
    const cmd = this.command;
    if (cmd !== before.command) h.onCommandChange?.(before.command, cmd);
    for (let i = 0; i <= 6; i++) {
      const v = this.barRegister(i);
      if (v !== undefined && v !== before.bars[i]) h.onBarChange?.(i, v);
    }
    const msi = this.msiState();
    const b = before.msi;
    if (
      msi &&
      b &&
      (msi.enabled !== b.enabled ||
        msi.address !== b.address ||
        msi.data !== b.data ||
        msi.multipleMessageEnable !== b.multipleMessageEnable ||
        msi.maskBits !== b.maskBits)
    ) {
      h.onMsiChange?.(msi);
    }
    const msix = this.msixControl();
    if (msix && before.msix && (msix.enabled !== before.msix.enabled || msix.functionMask !== before.msix.functionMask)) {
      h.onMsixControlChange?.(msix);
    }
    const ps = this.powerState;
    if (ps !== undefined && before.powerState !== undefined && ps !== before.powerState) {
      h.onPowerStateChange?.(before.powerState, ps);
    }
  }

  // ---- state getters ------------------------------------------------------

  get command(): number {
    return this.get16(C.PCI_COMMAND);
  }
  get status(): number {
    return this.get16(C.PCI_STATUS);
  }
  get busMasterEnabled(): boolean {
    return (this.command & C.PCI_COMMAND_MASTER) !== 0;
  }
  get memoryEnabled(): boolean {
    return (this.command & C.PCI_COMMAND_MEMORY) !== 0;
  }
  get ioEnabled(): boolean {
    return (this.command & C.PCI_COMMAND_IO) !== 0;
  }
  get intxDisabled(): boolean {
    return (this.command & C.PCI_COMMAND_INTX_DISABLE) !== 0;
  }
  get interruptLine(): number {
    return this.bytes[C.PCI_INTERRUPT_LINE]!;
  }

  /** Status bit 3 follows the device's INTx line (asserted or not). */
  setInterruptStatus(asserted: boolean): void {
    const s = this.status;
    this.set16(C.PCI_STATUS, asserted ? s | C.PCI_STATUS_INTERRUPT : s & ~C.PCI_STATUS_INTERRUPT);
  }

  /** Set bits in the Status register from the device side (e.g. Received Master Abort). */
  raiseStatus(bits: number): void {
    this.set16(C.PCI_STATUS, this.status | (bits & C.PCI_STATUS_W1C));
  }

  /** BAR as validated from the description (undefined: empty, or the upper half of a 64-bit BAR). */
  bar(index: number): ResolvedBar | undefined {
    return this.bars[index];
  }

  /** Expansion ROM size (0: none). */
  get romBarSize(): number {
    return this.romSize;
  }

  /**
   * Raw register value of BAR `index` (0..5, a 64-bit BAR as one value at
   * its even index) or of the ROM BAR (6); undefined for an empty BAR.
   */
  barRegister(index: number): bigint | undefined {
    if (index === 6) return this.romSize ? BigInt(this.get32(C.PCI_ROM_ADDRESS)) : undefined;
    const bar = this.bars[index];
    if (!bar) return undefined;
    const off = C.PCI_BASE_ADDRESS_0 + 4 * index;
    const lo = BigInt(this.get32(off));
    return bar.kind === 'mem64' ? lo | (BigInt(this.get32(off + 4)) << 32n) : lo;
  }

  /** Address programmed into BAR `index` (type bits stripped); 6 = ROM. */
  barAddress(index: number): bigint | undefined {
    const raw = this.barRegister(index);
    if (raw === undefined) return undefined;
    if (index === 6) return raw & BigInt(C.PCI_ROM_ADDRESS_MASK);
    return this.bars[index]!.kind === 'io' ? raw & ~3n : raw & ~15n;
  }

  get romEnabled(): boolean {
    return this.romSize !== 0 && (this.get32(C.PCI_ROM_ADDRESS) & C.PCI_ROM_ENABLE) !== 0;
  }

  get powerState(): number | undefined {
    const o = this.findCapability(C.PCI_CAP_ID_PM);
    return o === undefined ? undefined : this.get16(o + C.PCI_PM_CTRL) & C.PCI_PM_CTRL_STATE_MASK;
  }

  msiState(): MsiState | undefined {
    const o = this.findCapability(C.PCI_CAP_ID_MSI);
    if (o === undefined) return undefined;
    const ctl = this.get16(o + C.PCI_MSI_FLAGS);
    const a64 = (ctl & C.PCI_MSI_FLAGS_64BIT) !== 0;
    const pvm = (ctl & C.PCI_MSI_FLAGS_MASKBIT) !== 0;
    const dataOff = o + (a64 ? 12 : 8);
    let address = BigInt(this.get32(o + C.PCI_MSI_ADDRESS_LO));
    if (a64) address |= BigInt(this.get32(o + 8)) << 32n;
    const mme = (ctl & C.PCI_MSI_FLAGS_QSIZE) >> 4;
    return {
      enabled: (ctl & C.PCI_MSI_FLAGS_ENABLE) !== 0,
      address,
      data: this.get16(dataOff),
      multipleMessageEnable: mme,
      vectors: 1 << mme,
      capableVectors: 1 << ((ctl & C.PCI_MSI_FLAGS_QMASK) >> 1),
      address64: a64,
      perVectorMasking: pvm,
      maskBits: pvm ? this.get32(dataOff + 4) : 0,
      pendingBits: pvm ? this.get32(dataOff + 8) : 0,
    };
  }

  /** Device side: set or clear an MSI pending bit (per-vector masking only). */
  setMsiPending(vector: number, pending: boolean): void {
    const st = this.msiState();
    const o = this.findCapability(C.PCI_CAP_ID_MSI);
    if (!st || o === undefined || !st.perVectorMasking) return;
    if (!Number.isInteger(vector) || vector < 0 || vector >= st.capableVectors) {
      throw new RangeError(`MSI vector ${vector} out of range`);
    }
    const off = o + (st.address64 ? 12 : 8) + 8;
    const bit = (1 << vector) >>> 0;
    this.set32(off, (pending ? st.pendingBits | bit : st.pendingBits & ~bit) >>> 0);
  }

  msixControl(): MsixControl | undefined {
    const o = this.findCapability(C.PCI_CAP_ID_MSIX);
    if (o === undefined) return undefined;
    const ctl = this.get16(o + C.PCI_MSIX_FLAGS);
    return { enabled: (ctl & C.PCI_MSIX_FLAGS_ENABLE) !== 0, functionMask: (ctl & C.PCI_MSIX_FLAGS_MASKALL) !== 0 };
  }

  // ---- capabilities ---------------------------------------------------------

  findCapability(id: number): number | undefined {
    return this.caps.find((c) => c.id === id)?.offset;
  }

  /** The next capability with `id` after the one at offset `after`, in list order. */
  findNextCapability(id: number, after: number): number | undefined {
    return this.caps.find((c) => c.id === id && c.offset > after)?.offset;
  }

  findExtendedCapability(id: number): number | undefined {
    return this.extCaps.find((c) => c.id === id)?.offset;
  }

  findNextExtendedCapability(id: number, after: number): number | undefined {
    return this.extCaps.find((c) => c.id === id && c.offset > after)?.offset;
  }

  /** Standard then extended capabilities, each in list order. */
  listCapabilities(): CapabilityInfo[] {
    return [...this.caps, ...this.extCaps].map(publicInfo);
  }

  /** The capability whose bytes include `offset`, if any (for routing accesses). */
  capabilityAt(offset: number): CapabilityInfo | undefined {
    const list = offset >= C.PCI_EXT_CAP_START ? this.extCaps : this.caps;
    const c = list.find((p) => offset >= p.offset && offset < p.offset + p.size);
    return c ? publicInfo(c) : undefined;
  }
}

interface Snapshot {
  command: number;
  bars: (bigint | undefined)[];
  msi: MsiState | undefined;
  msix: MsixControl | undefined;
  powerState: number | undefined;
}

function publicInfo(c: PlacedCapability): CapabilityInfo {
  return { id: c.id, offset: c.offset, size: c.size, extended: c.extended, type: c.type, readOnly: c.readOnly, callback: c.callback };
}
