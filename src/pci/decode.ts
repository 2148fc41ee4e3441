// A pure decoder of PCI configuration space bytes, and an `lspci -vv`-style
// formatter. Robust against arbitrary input: short buffers read as zero,
// capability pointers are bounds-checked and list loops are cut.

import * as C from './constants.js';

export interface DecodedBar {
  index: number;
  raw: number;
  kind: 'io' | 'mem32' | 'mem64' | 'mem1m' | 'reserved';
  is64: boolean;
  prefetchable: boolean;
  /** Address bits (type bits stripped; 64 bits for a 64-bit BAR). */
  address: bigint;
  /** From `options.barSizes`, when given. */
  size?: bigint;
}

export interface DecodedRom {
  raw: number;
  address: number;
  enabled: boolean;
  size?: number;
}

export interface DecodedPm {
  kind: 'pm';
  offset: number;
  id: number;
  next: number;
  version: number;
  pmeClock: boolean;
  dsi: boolean;
  auxCurrent: number;
  d1: boolean;
  d2: boolean;
  pmeSupport: number;
  powerState: number;
  noSoftReset: boolean;
  pmeEnable: boolean;
  dataSelect: number;
  dataScale: number;
  pmeStatus: boolean;
}

export interface DecodedMsi {
  kind: 'msi';
  offset: number;
  id: number;
  next: number;
  enabled: boolean;
  /** Vectors capable / enabled (decoded counts, not log2). */
  capableVectors: number;
  enabledVectors: number;
  address64: boolean;
  perVectorMasking: boolean;
  address: bigint;
  data: number;
  maskBits?: number;
  pendingBits?: number;
}

export interface DecodedMsix {
  kind: 'msix';
  offset: number;
  id: number;
  next: number;
  enabled: boolean;
  functionMask: boolean;
  tableSize: number;
  tableBar: number;
  tableOffset: number;
  pbaBar: number;
  pbaOffset: number;
}

export interface DecodedPcie {
  kind: 'pcie';
  offset: number;
  id: number;
  next: number;
  version: number;
  deviceType: number;
  deviceTypeName: string;
  slotImplemented: boolean;
  interruptMessageNumber: number;
  devCap: number;
  maxPayloadSupported: number;
  extendedTagSupported: boolean;
  roleBasedErrorReporting: boolean;
  flrCapable: boolean;
  devCtl: number;
  correctableErrorReporting: boolean;
  nonFatalErrorReporting: boolean;
  fatalErrorReporting: boolean;
  unsupportedRequestReporting: boolean;
  relaxedOrdering: boolean;
  maxPayload: number;
  extendedTag: boolean;
  noSnoop: boolean;
  maxReadRequest: number;
  initiateFlr: boolean;
  devSta: number;
  linkCap: number;
  maxLinkSpeed: number;
  maxLinkWidth: number;
  linkCtl: number;
  linkSta: number;
  linkSpeed: number;
  linkWidth: number;
  devCap2: number;
  devCtl2: number;
  linkCap2: number;
  linkCtl2: number;
}

export interface DecodedVendorCap {
  kind: 'vendor';
  offset: number;
  id: number;
  next: number;
  length: number;
  data: Uint8Array;
}

export interface DecodedUnknownCap {
  kind: 'unknown';
  offset: number;
  id: number;
  next: number;
  name?: string;
}

export type DecodedCapability = (DecodedPm | DecodedMsi | DecodedMsix | DecodedPcie | DecodedVendorCap | DecodedUnknownCap) & {
  /** The capability's bytes run past the end of the (standard) config space. */
  truncated?: boolean;
};

export interface DecodedDsn {
  kind: 'dsn';
  offset: number;
  id: number;
  version: number;
  next: number;
  serial: bigint;
}

export interface DecodedVendorExtCap {
  kind: 'vendor';
  offset: number;
  id: number;
  version: number;
  next: number;
  vsecId: number;
  vsecRev: number;
  vsecLength: number;
  data: Uint8Array;
}

export interface DecodedUnknownExtCap {
  kind: 'unknown';
  offset: number;
  id: number;
  version: number;
  next: number;
  name?: string;
}

export type DecodedExtendedCapability = (DecodedDsn | DecodedVendorExtCap | DecodedUnknownExtCap) & { truncated?: boolean };

export interface DecodedConfigSpace {
  /** Bytes given. */
  size: number;
  vendorId: number;
  deviceId: number;
  command: number;
  status: number;
  revision: number;
  classCode: { base: number; sub: number; progIf: number; value: number };
  cacheLineSize: number;
  latencyTimer: number;
  headerType: number;
  multiFunction: boolean;
  bist: number;
  /** Type-0 header only: BAR0..5 that are implemented (a 64-bit BAR once, at its even index). */
  bars: DecodedBar[];
  subsystemVendorId: number;
  subsystemId: number;
  rom?: DecodedRom;
  capabilityPointer: number;
  interruptLine: number;
  interruptPin: number;
  minGnt: number;
  maxLat: number;
  capabilities: DecodedCapability[];
  extendedCapabilities: DecodedExtendedCapability[];
  /** Problems found (bad pointers, loops, truncation). */
  warnings: string[];
}

export interface DecodeOptions {
  /** Region sizes (e.g. from DEVICE_GET_REGION_INFO): BAR0..5; 0/undefined = unimplemented. */
  barSizes?: (number | bigint | undefined)[];
  romSize?: number;
}

class Reader {
  truncated = false;
  constructor(
    private readonly b: Uint8Array,
    private readonly limit: number,
  ) {}
  u8(off: number): number {
    if (off < 0 || off >= this.limit || off >= this.b.length) {
      this.truncated = true;
      return 0;
    }
    return this.b[off]!;
  }
  u16(off: number): number {
    return this.u8(off) | (this.u8(off + 1) << 8);
  }
  u32(off: number): number {
    return (this.u16(off) | (this.u16(off + 2) << 16)) >>> 0;
  }
  bytes(off: number, len: number): Uint8Array {
    const out = new Uint8Array(Math.max(0, len));
    for (let i = 0; i < out.length; i++) out[i] = this.u8(off + i);
    return out;
  }
}

const PCIE_TYPES: Record<number, string> = {
  0: 'Endpoint',
  1: 'Legacy Endpoint',
  4: 'Root Port',
  5: 'Upstream Port',
  6: 'Downstream Port',
  7: 'PCI-Express to PCI/PCI-X Bridge',
  8: 'PCI/PCI-X to PCI-Express Bridge',
  9: 'Root Complex Integrated Endpoint',
  10: 'Root Complex Event Collector',
};

function decodeCapability(bytes: Uint8Array, off: number): DecodedCapability {
  // Standard capabilities live in the first 256 bytes.
  const r = new Reader(bytes, C.PCI_CONFIG_SIZE);
  const id = r.u8(off);
  const next = r.u8(off + 1);
  let cap: DecodedCapability;
  switch (id) {
    case C.PCI_CAP_ID_PM: {
      const pmc = r.u16(off + 2);
      const csr = r.u16(off + 4);
      cap = {
        kind: 'pm',
        offset: off,
        id,
        next,
        version: pmc & 7,
        pmeClock: (pmc & 0x8) !== 0,
        dsi: (pmc & 0x20) !== 0,
        auxCurrent: (pmc >> 6) & 7,
        d1: (pmc & 0x200) !== 0,
        d2: (pmc & 0x400) !== 0,
        pmeSupport: pmc >> 11,
        powerState: csr & 3,
        noSoftReset: (csr & 8) !== 0,
        pmeEnable: (csr & 0x100) !== 0,
        dataSelect: (csr >> 9) & 0xf,
        dataScale: (csr >> 13) & 3,
        pmeStatus: (csr & 0x8000) !== 0,
      };
      break;
    }
    case C.PCI_CAP_ID_MSI: {
      const ctl = r.u16(off + 2);
      const a64 = (ctl & C.PCI_MSI_FLAGS_64BIT) !== 0;
      const pvm = (ctl & C.PCI_MSI_FLAGS_MASKBIT) !== 0;
      const dataOff = off + (a64 ? 12 : 8);
      let address = BigInt(r.u32(off + 4));
      if (a64) address |= BigInt(r.u32(off + 8)) << 32n;
      const msi: DecodedMsi = {
        kind: 'msi',
        offset: off,
        id,
        next,
        enabled: (ctl & 1) !== 0,
        capableVectors: 1 << ((ctl >> 1) & 7),
        enabledVectors: 1 << ((ctl >> 4) & 7),
        address64: a64,
        perVectorMasking: pvm,
        address,
        data: r.u16(dataOff),
      };
      if (pvm) {
        msi.maskBits = r.u32(dataOff + 4);
        msi.pendingBits = r.u32(dataOff + 8);
      }
      cap = msi;
      break;
    }
    case C.PCI_CAP_ID_MSIX: {
      const ctl = r.u16(off + 2);
      const table = r.u32(off + 4);
      const pba = r.u32(off + 8);
      cap = {
        kind: 'msix',
        offset: off,
        id,
        next,
        enabled: (ctl & C.PCI_MSIX_FLAGS_ENABLE) !== 0,
        functionMask: (ctl & C.PCI_MSIX_FLAGS_MASKALL) !== 0,
        tableSize: (ctl & C.PCI_MSIX_FLAGS_QSIZE) + 1,
        tableBar: table & 7,
        tableOffset: (table & ~7) >>> 0,
        pbaBar: pba & 7,
        pbaOffset: (pba & ~7) >>> 0,
      };
      break;
    }
    case C.PCI_CAP_ID_EXP: {
      const flags = r.u16(off + 2);
      const devCap = r.u32(off + C.PCI_EXP_DEVCAP);
      const devCtl = r.u16(off + C.PCI_EXP_DEVCTL);
      const linkCap = r.u32(off + C.PCI_EXP_LNKCAP);
      const linkSta = r.u16(off + C.PCI_EXP_LNKSTA);
      const version = flags & 0xf;
      const deviceType = (flags >> 4) & 0xf;
      const v2 = version >= 2;
      cap = {
        kind: 'pcie',
        offset: off,
        id,
        next,
        version,
        deviceType,
        deviceTypeName: PCIE_TYPES[deviceType] ?? `Unknown type ${deviceType}`,
        slotImplemented: (flags & 0x100) !== 0,
        interruptMessageNumber: (flags >> 9) & 0x1f,
        devCap,
        maxPayloadSupported: 128 << (devCap & 7),
        extendedTagSupported: (devCap & C.PCI_EXP_DEVCAP_EXT_TAG) !== 0,
        roleBasedErrorReporting: (devCap & C.PCI_EXP_DEVCAP_RBER) !== 0,
        flrCapable: (devCap & C.PCI_EXP_DEVCAP_FLR) !== 0,
        devCtl,
        correctableErrorReporting: (devCtl & 1) !== 0,
        nonFatalErrorReporting: (devCtl & 2) !== 0,
        fatalErrorReporting: (devCtl & 4) !== 0,
        unsupportedRequestReporting: (devCtl & 8) !== 0,
        relaxedOrdering: (devCtl & 0x10) !== 0,
        maxPayload: 128 << ((devCtl >> 5) & 7),
        extendedTag: (devCtl & 0x100) !== 0,
        noSnoop: (devCtl & 0x800) !== 0,
        maxReadRequest: 128 << ((devCtl >> 12) & 7),
        initiateFlr: (devCtl & 0x8000) !== 0,
        devSta: r.u16(off + C.PCI_EXP_DEVSTA),
        linkCap,
        maxLinkSpeed: linkCap & 0xf,
        maxLinkWidth: (linkCap >> 4) & 0x3f,
        linkCtl: r.u16(off + C.PCI_EXP_LNKCTL),
        linkSta,
        linkSpeed: linkSta & 0xf,
        linkWidth: (linkSta >> 4) & 0x3f,
        devCap2: v2 ? r.u32(off + C.PCI_EXP_DEVCAP2) : 0,
        devCtl2: v2 ? r.u16(off + C.PCI_EXP_DEVCTL2) : 0,
        linkCap2: v2 ? r.u32(off + C.PCI_EXP_LNKCAP2) : 0,
        linkCtl2: v2 ? r.u16(off + C.PCI_EXP_LNKCTL2) : 0,
      };
      break;
    }
    case C.PCI_CAP_ID_VNDR: {
      const length = r.u8(off + 2);
      cap = { kind: 'vendor', offset: off, id, next, length, data: r.bytes(off + 3, length - 3) };
      break;
    }
    default: {
      const u: DecodedUnknownCap = { kind: 'unknown', offset: off, id, next };
      const name = C.CAP_NAMES[id];
      if (name !== undefined) u.name = name;
      cap = u;
    }
  }
  if (r.truncated) cap.truncated = true;
  return cap;
}

function decodeExtCapability(bytes: Uint8Array, off: number): DecodedExtendedCapability {
  const r = new Reader(bytes, Math.min(bytes.length, C.PCIE_CONFIG_SIZE));
  const hdr = r.u32(off);
  const id = hdr & 0xffff;
  const version = (hdr >>> 16) & 0xf;
  const next = hdr >>> 20;
  let cap: DecodedExtendedCapability;
  if (id === C.PCI_EXT_CAP_ID_DSN) {
    cap = { kind: 'dsn', offset: off, id, version, next, serial: BigInt(r.u32(off + 4)) | (BigInt(r.u32(off + 8)) << 32n) };
  } else if (id === C.PCI_EXT_CAP_ID_VNDR) {
    const h = r.u32(off + 4);
    const vsecLength = h >>> 20;
    cap = {
      kind: 'vendor',
      offset: off,
      id,
      version,
      next,
      vsecId: h & 0xffff,
      vsecRev: (h >>> 16) & 0xf,
      vsecLength,
      data: r.bytes(off + 8, vsecLength - 8),
    };
  } else {
    const u: DecodedUnknownExtCap = { kind: 'unknown', offset: off, id, version, next };
    const name = C.EXT_CAP_NAMES[id];
    if (name !== undefined) u.name = name;
    cap = u;
  }
  if (r.truncated) cap.truncated = true;
  return cap;
}

function toBigSize(s: number | bigint | undefined): bigint | undefined {
  if (s === undefined) return undefined;
  if (typeof s === 'bigint') return s;
  return Number.isFinite(s) && s >= 0 ? BigInt(Math.floor(s)) : undefined;
}

/** Decode config space bytes. Never throws; problems go to `warnings`. */
export function decodeConfigSpace(bytes: Uint8Array, options: DecodeOptions = {}): DecodedConfigSpace {
  const warnings: string[] = [];
  if (bytes.length < C.PCI_STD_HEADER_SIZE) warnings.push(`only ${bytes.length} bytes; the header needs 64`);
  const r = new Reader(bytes, bytes.length);
  const headerType = r.u8(C.PCI_HEADER_TYPE);
  const layout = headerType & 0x7f;
  const status = r.u16(C.PCI_STATUS);
  const out: DecodedConfigSpace = {
    size: bytes.length,
    vendorId: r.u16(C.PCI_VENDOR_ID),
    deviceId: r.u16(C.PCI_DEVICE_ID),
    command: r.u16(C.PCI_COMMAND),
    status,
    revision: r.u8(C.PCI_REVISION_ID),
    classCode: {
      base: r.u8(0x0b),
      sub: r.u8(0x0a),
      progIf: r.u8(0x09),
      value: (r.u8(0x0b) << 16) | (r.u8(0x0a) << 8) | r.u8(0x09),
    },
    cacheLineSize: r.u8(C.PCI_CACHE_LINE_SIZE),
    latencyTimer: r.u8(C.PCI_LATENCY_TIMER),
    headerType: layout,
    multiFunction: (headerType & 0x80) !== 0,
    bist: r.u8(C.PCI_BIST),
    bars: [],
    subsystemVendorId: 0,
    subsystemId: 0,
    capabilityPointer: 0,
    interruptLine: r.u8(C.PCI_INTERRUPT_LINE),
    interruptPin: r.u8(C.PCI_INTERRUPT_PIN),
    minGnt: r.u8(C.PCI_MIN_GNT),
    maxLat: r.u8(C.PCI_MAX_LAT),
    capabilities: [],
    extendedCapabilities: [],
    warnings,
  };

  if (layout === 0) {
    out.subsystemVendorId = r.u16(C.PCI_SUBSYSTEM_VENDOR_ID);
    out.subsystemId = r.u16(C.PCI_SUBSYSTEM_ID);
    const sizes = options.barSizes;
    for (let i = 0; i < 6; i++) {
      const raw = r.u32(C.PCI_BASE_ADDRESS_0 + 4 * i);
      const size = toBigSize(sizes?.[i]);
      const implemented = sizes ? size !== undefined && size > 0n : raw !== 0;
      let bar: DecodedBar;
      if (raw & C.PCI_BAR_SPACE_IO) {
        bar = { index: i, raw, kind: 'io', is64: false, prefetchable: false, address: BigInt((raw & ~3) >>> 0) };
      } else {
        const type = (raw >> 1) & 3;
        const prefetchable = (raw & C.PCI_BAR_MEM_PREFETCH) !== 0;
        let address = BigInt((raw & ~15) >>> 0);
        const is64 = type === 2;
        if (is64) {
          if (i === 5) warnings.push('BAR5 claims to be 64-bit');
          else address |= BigInt(r.u32(C.PCI_BASE_ADDRESS_0 + 4 * (i + 1))) << 32n;
        }
        const kind = type === 0 ? 'mem32' : type === 1 ? 'mem1m' : type === 2 ? 'mem64' : 'reserved';
        bar = { index: i, raw, kind, is64, prefetchable, address };
      }
      if (size !== undefined && size > 0n) bar.size = size;
      if (implemented) out.bars.push(bar);
      if (bar.is64 && i < 5) i++; // the upper dword is part of this BAR
    }
    const romRaw = r.u32(C.PCI_ROM_ADDRESS);
    if (romRaw !== 0 || (options.romSize ?? 0) > 0) {
      const rom: DecodedRom = { raw: romRaw, address: (romRaw & C.PCI_ROM_ADDRESS_MASK) >>> 0, enabled: (romRaw & 1) !== 0 };
      if (options.romSize) rom.size = options.romSize;
      out.rom = rom;
    }
  } else if (layout !== 1 && layout !== 2) {
    warnings.push(`unknown header type ${layout}`);
  }

  // Standard capability list.
  const ptrOff = layout === 2 ? 0x14 : C.PCI_CAPABILITY_LIST;
  const first = r.u8(ptrOff);
  out.capabilityPointer = first;
  if (status & C.PCI_STATUS_CAP_LIST) {
    const seen = new Set<number>();
    let ptr = first & ~3;
    while (ptr !== 0) {
      if (ptr < C.PCI_STD_HEADER_SIZE || ptr + 2 > Math.min(bytes.length, C.PCI_CONFIG_SIZE)) {
        warnings.push(`capability pointer 0x${ptr.toString(16)} out of range`);
        break;
      }
      if (seen.has(ptr)) {
        warnings.push(`capability list loops back to 0x${ptr.toString(16)}`);
        break;
      }
      seen.add(ptr);
      const cap = decodeCapability(bytes, ptr);
      if (cap.truncated) warnings.push(`capability at 0x${ptr.toString(16)} is truncated`);
      out.capabilities.push(cap);
      ptr = cap.next & ~3;
    }
  } else if (first !== 0) {
    warnings.push('capability pointer set but Status.CapList is clear');
  }

  // Extended capability list.
  if (bytes.length > C.PCI_EXT_CAP_START) {
    const seen = new Set<number>();
    let ptr = C.PCI_EXT_CAP_START;
    while (ptr !== 0) {
      if (ptr < C.PCI_EXT_CAP_START || ptr + 4 > Math.min(bytes.length, C.PCIE_CONFIG_SIZE)) {
        warnings.push(`extended capability pointer 0x${ptr.toString(16)} out of range`);
        break;
      }
      if (seen.has(ptr)) {
        warnings.push(`extended capability list loops back to 0x${ptr.toString(16)}`);
        break;
      }
      seen.add(ptr);
      const hdr = r.u32(ptr);
      if (hdr === 0 || hdr === 0xffffffff) break;
      const cap = decodeExtCapability(bytes, ptr);
      if (cap.truncated) warnings.push(`extended capability at 0x${ptr.toString(16)} is truncated`);
      out.extendedCapabilities.push(cap);
      ptr = cap.next & ~3;
    }
  }
  return out;
}

// ---- formatting ----------------------------------------------------------------

const flag = (name: string, on: boolean): string => `${name}${on ? '+' : '-'}`;
const hex = (v: number | bigint, width: number): string => v.toString(16).padStart(width, '0');

/** lspci's size notation: 8, 4K, 1M, 2G. */
export function formatSize(size: bigint | number): string {
  let s = BigInt(size);
  const units = ['', 'K', 'M', 'G', 'T', 'P', 'E'];
  let u = 0;
  while (s !== 0n && s % 1024n === 0n && u < units.length - 1) {
    s /= 1024n;
    u++;
  }
  return `${s}${units[u]}`;
}

const LINK_SPEEDS: Record<number, string> = { 1: '2.5GT/s', 2: '5GT/s', 3: '8GT/s', 4: '16GT/s', 5: '32GT/s', 6: '64GT/s' };
const linkSpeed = (s: number): string => LINK_SPEEDS[s] ?? `unknown (${s})`;

function formatCap(c: DecodedCapability, lines: string[]): void {
  const at = `\tCapabilities: [${hex(c.offset, 2)}]`;
  switch (c.kind) {
    case 'pm': {
      lines.push(`${at} Power Management version ${c.version}`);
      const pme = ['D0', 'D1', 'D2', 'D3hot', 'D3cold'].map((n, i) => flag(n, (c.pmeSupport & (1 << i)) !== 0)).join(',');
      const aux = [0, 55, 100, 160, 220, 270, 320, 375][c.auxCurrent];
      lines.push(`\t\tFlags: ${flag('PMEClk', c.pmeClock)} ${flag('DSI', c.dsi)} ${flag('D1', c.d1)} ${flag('D2', c.d2)} AuxCurrent=${aux}mA PME(${pme})`);
      lines.push(
        `\t\tStatus: D${c.powerState === 3 ? '3hot' : c.powerState} ${flag('NoSoftRst', c.noSoftReset)} ${flag('PME-Enable', c.pmeEnable)} DSel=${c.dataSelect} DScale=${c.dataScale} ${flag('PME', c.pmeStatus)}`,
      );
      break;
    }
    case 'msi':
      lines.push(
        `${at} MSI: ${flag('Enable', c.enabled)} Count=${c.enabledVectors}/${c.capableVectors} ${flag('Maskable', c.perVectorMasking)} ${flag('64bit', c.address64)}`,
      );
      lines.push(`\t\tAddress: ${hex(c.address, c.address64 ? 16 : 8)}  Data: ${hex(c.data, 4)}`);
      if (c.perVectorMasking) lines.push(`\t\tMasking: ${hex(c.maskBits ?? 0, 8)}  Pending: ${hex(c.pendingBits ?? 0, 8)}`);
      break;
    case 'msix':
      lines.push(`${at} MSI-X: ${flag('Enable', c.enabled)} Count=${c.tableSize} ${flag('Masked', c.functionMask)}`);
      lines.push(`\t\tVector table: BAR=${c.tableBar} offset=${hex(c.tableOffset, 8)}`);
      lines.push(`\t\tPBA: BAR=${c.pbaBar} offset=${hex(c.pbaOffset, 8)}`);
      break;
    case 'pcie':
      lines.push(`${at} Express (v${c.version}) ${c.deviceTypeName}, MSI ${hex(c.interruptMessageNumber, 2)}`);
      lines.push(`\t\tDevCap:\tMaxPayload ${c.maxPayloadSupported} bytes`);
      lines.push(`\t\t\t${flag('ExtTag', c.extendedTagSupported)} ${flag('RBE', c.roleBasedErrorReporting)} ${flag('FLReset', c.flrCapable)}`);
      lines.push(
        `\t\tDevCtl:\t${flag('CorrErr', c.correctableErrorReporting)} ${flag('NonFatalErr', c.nonFatalErrorReporting)} ${flag('FatalErr', c.fatalErrorReporting)} ${flag('UnsupReq', c.unsupportedRequestReporting)}`,
      );
      lines.push(`\t\t\t${flag('RlxdOrd', c.relaxedOrdering)} ${flag('ExtTag', c.extendedTag)} ${flag('NoSnoop', c.noSnoop)} ${flag('FLReset', c.initiateFlr)}`);
      lines.push(`\t\t\tMaxPayload ${c.maxPayload} bytes, MaxReadReq ${c.maxReadRequest} bytes`);
      lines.push(
        `\t\tDevSta:\t${flag('CorrErr', (c.devSta & 1) !== 0)} ${flag('NonFatalErr', (c.devSta & 2) !== 0)} ${flag('FatalErr', (c.devSta & 4) !== 0)} ${flag('UnsupReq', (c.devSta & 8) !== 0)} ${flag('AuxPwr', (c.devSta & 0x10) !== 0)} ${flag('TransPend', (c.devSta & 0x20) !== 0)}`,
      );
      lines.push(`\t\tLnkCap:\tPort #${c.linkCap >>> 24}, Speed ${linkSpeed(c.maxLinkSpeed)}, Width x${c.maxLinkWidth}`);
      lines.push(`\t\tLnkSta:\tSpeed ${linkSpeed(c.linkSpeed)}, Width x${c.linkWidth}`);
      break;
    case 'vendor':
      lines.push(`${at} Vendor Specific Information: Len=${hex(c.length, 2)} <?>`);
      break;
    case 'unknown':
      lines.push(`${at} ${c.name ?? `Capability ID ${hex(c.id, 2)}`} <?>`);
      break;
  }
}

function formatExtCap(c: DecodedExtendedCapability, lines: string[]): void {
  const at = `\tCapabilities: [${hex(c.offset, 3)} v${c.version}]`;
  switch (c.kind) {
    case 'dsn': {
      const parts: string[] = [];
      for (let i = 7; i >= 0; i--) parts.push(hex((c.serial >> BigInt(8 * i)) & 0xffn, 2));
      lines.push(`${at} Device Serial Number ${parts.join('-')}`);
      break;
    }
    case 'vendor':
      lines.push(`${at} Vendor Specific Information: ID=${hex(c.vsecId, 4)} Rev=${c.vsecRev} Len=${hex(c.vsecLength, 3)} <?>`);
      break;
    case 'unknown':
      lines.push(`${at} ${c.name ?? `Extended Capability ID ${hex(c.id, 4)}`} <?>`);
      break;
  }
}

/** Human-readable text in the style of `lspci -vv`, one line per item. */
export function formatConfigSpace(d: DecodedConfigSpace): string {
  const lines: string[] = [];
  const cc = d.classCode;
  lines.push(
    `Device ${hex(d.vendorId, 4)}:${hex(d.deviceId, 4)} class ${hex(cc.base, 2)}${hex(cc.sub, 2)} prog-if ${hex(cc.progIf, 2)} (rev ${hex(d.revision, 2)})`,
  );
  if (d.headerType === 0) lines.push(`\tSubsystem: ${hex(d.subsystemVendorId, 4)}:${hex(d.subsystemId, 4)}`);
  else lines.push(`\tHeader type ${d.headerType}`);
  const c = d.command;
  lines.push(
    `\tControl: ${flag('I/O', (c & 1) !== 0)} ${flag('Mem', (c & 2) !== 0)} ${flag('BusMaster', (c & 4) !== 0)} ${flag('SpecCycle', (c & 8) !== 0)} ${flag('MemWINV', (c & 0x10) !== 0)} ${flag('VGASnoop', (c & 0x20) !== 0)} ${flag('ParErr', (c & 0x40) !== 0)} ${flag('Stepping', (c & 0x80) !== 0)} ${flag('SERR', (c & 0x100) !== 0)} ${flag('FastB2B', (c & 0x200) !== 0)} ${flag('DisINTx', (c & 0x400) !== 0)}`,
  );
  const s = d.status;
  const devsel = ['fast', 'medium', 'slow', '??'][(s >> 9) & 3];
  lines.push(
    `\tStatus: ${flag('Cap', (s & 0x10) !== 0)} ${flag('66MHz', (s & 0x20) !== 0)} ${flag('UDF', (s & 0x40) !== 0)} ${flag('FastB2B', (s & 0x80) !== 0)} ${flag('ParErr', (s & 0x100) !== 0)} DEVSEL=${devsel} ${flag('>TAbort', (s & 0x800) !== 0)} ${flag('<TAbort', (s & 0x1000) !== 0)} ${flag('<MAbort', (s & 0x2000) !== 0)} ${flag('>SERR', (s & 0x4000) !== 0)} ${flag('<PERR', (s & 0x8000) !== 0)} ${flag('INTx', (s & 8) !== 0)}`,
  );
  if (d.interruptPin !== 0) {
    const pin = d.interruptPin <= 4 ? String.fromCharCode(0x40 + d.interruptPin) : `?${d.interruptPin}`;
    lines.push(`\tInterrupt: pin ${pin} routed to IRQ ${d.interruptLine}`);
  }
  for (const b of d.bars) {
    const size = b.size !== undefined ? ` [size=${formatSize(b.size)}]` : '';
    if (b.kind === 'io') {
      const at = b.address !== 0n ? ` at ${hex(b.address, 4)}` : '';
      const dis = b.address !== 0n && (c & 1) === 0 ? ' [disabled]' : '';
      lines.push(`\tRegion ${b.index}: I/O ports${at}${dis}${size}`);
    } else {
      const bits = b.kind === 'mem64' ? '64-bit' : b.kind === 'mem1m' ? 'low-1M' : b.kind === 'reserved' ? 'type 3' : '32-bit';
      const at = b.address !== 0n ? ` at ${hex(b.address, 8)}` : '';
      const dis = b.address !== 0n && (c & 2) === 0 ? ' [disabled]' : '';
      lines.push(`\tRegion ${b.index}: Memory${at} (${bits}, ${b.prefetchable ? 'prefetchable' : 'non-prefetchable'})${dis}${size}`);
    }
  }
  if (d.rom) {
    const at = d.rom.address !== 0 ? ` at ${hex(d.rom.address, 8)}` : '';
    const size = d.rom.size !== undefined ? ` [size=${formatSize(d.rom.size)}]` : '';
    lines.push(`\tExpansion ROM${at}${d.rom.enabled ? '' : ' [disabled]'}${size}`);
  }
  for (const cap of d.capabilities) formatCap(cap, lines);
  for (const cap of d.extendedCapabilities) formatExtCap(cap, lines);
  for (const w of d.warnings) lines.push(`\t!! ${w}`);
  return lines.join('\n') + '\n';
}
