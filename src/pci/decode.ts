// A pure decoder of PCI configuration space bytes. Robust against arbitrary
// input: short buffers read as zero, capability pointers are bounds-checked
// and list loops are cut. format.ts renders the result like `lspci -vv`.

import * as C from './constants.js';
import { decodeCapability, decodeExtCapability, Reader } from './decode-capability.js';
import type { DecodeOptions, DecodedBar, DecodedConfigSpace, DecodedRom } from './decoded.js';

export * from './decoded.js';

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
