// Decoders of single capabilities, standard and extended. Bytes past the end
// read as zero and mark the capability truncated.
import * as C from './constants.js';
import type { DecodedCapability, DecodedExtendedCapability, DecodedMsi, DecodedUnknownCap, DecodedUnknownExtCap } from './decoded.js';

/** Reads little-endian fields; anything past `limit` or the buffer reads as zero and marks the read truncated. */
export class Reader {
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

/** Decodes the standard capability at `off` (within the first 256 bytes). */
export function decodeCapability(bytes: Uint8Array, off: number): DecodedCapability {
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

/** Decodes the extended capability at `off`. */
export function decodeExtCapability(bytes: Uint8Array, off: number): DecodedExtendedCapability {
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
