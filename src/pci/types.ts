// Public shapes of a PCI device description and of the state the config-space
// model reports to its owner.

/** A PCI class code: base class, sub-class and programming interface. */
export interface ClassCode {
  /** Base class (e.g. 0x01 mass storage). */
  base: number;
  /** Sub-class (e.g. 0x08 NVM). */
  sub: number;
  /** Programming interface (e.g. 0x02 NVMe). */
  progIf: number;
}

/** A BAR's type: I/O, 32-bit memory or 64-bit memory. */
export type BarKind = 'io' | 'mem32' | 'mem64';

/** A BAR of a PciDeviceDescription. */
export interface BarDescription {
  /** Power of two; at least 16 for memory BARs, at least 4 for I/O BARs. */
  size: number | bigint;
  /** I/O, 32-bit or 64-bit memory. */
  kind: BarKind;
  /** Memory BARs only. */
  prefetchable?: boolean;
}

/** The expansion ROM of a PciDeviceDescription. */
export interface RomDescription {
  /** 0 (no ROM) or a power of two of at least 2 KiB. */
  size: number;
}

/** Fields every capability description may carry. */
export interface CapabilityCommon {
  /** Explicit offset (dword aligned). Omitted: placed automatically. */
  offset?: number;
  /** Guest writes to the capability are ignored. */
  readOnly?: boolean;
  /**
   * The owner routes accesses to this capability itself (see
   * `PciConfigSpace.capabilityAt`). The model still holds its bytes.
   */
  callback?: boolean;
}

export interface PmCapabilityDescription extends CapabilityCommon {
  /** Power Management. */
  type: 'pm';
  /** PMC version field; default 3 (PCI PM 1.2). */
  version?: number;
  /** D1 supported. */
  d1?: boolean;
  /** D2 supported. */
  d2?: boolean;
  /** PME_Support bits (5 bits: D0, D1, D2, D3hot, D3cold). Default 0. */
  pmeSupport?: number;
  /** PMCSR No_Soft_Reset: D3hot→D0 keeps the device state. Default true. */
  noSoftReset?: boolean;
}

export interface MsiCapabilityDescription extends CapabilityCommon {
  /** MSI. */
  type: 'msi';
  /** Multiple Message Capable: 1, 2, 4, 8, 16 or 32. */
  vectors: number;
  /** 64-bit address capable. Default true. */
  address64?: boolean;
  /** Per-vector masking capable. Default false. */
  perVectorMasking?: boolean;
}

export interface MsixCapabilityDescription extends CapabilityCommon {
  /** MSI-X. */
  type: 'msix';
  /** Number of table entries, 1..2048. */
  tableSize: number;
  /** BAR (BIR) holding the table. */
  tableBar: number;
  /** Byte offset of the table in its BAR; 8-byte aligned. */
  tableOffset: number;
  /** BAR (BIR) holding the Pending Bit Array. */
  pbaBar: number;
  /** Byte offset of the PBA in its BAR; 8-byte aligned. */
  pbaOffset: number;
}

export interface PcieCapabilityDescription extends CapabilityCommon {
  /** PCI Express. */
  type: 'pcie';
  /** Device/port type: 0 = PCI Express endpoint (default), 9 = root complex integrated endpoint. */
  deviceType?: 0 | 9;
  /** Function Level Reset capable (DevCap bit 28). Default false. */
  flr?: boolean;
  /** Max_Payload_Size Supported as an encoded value 0..5 (128 << n bytes). Default 0. */
  maxPayloadSupported?: number;
  /** Extended tag field supported. Default false. */
  extendedTag?: boolean;
  /** Link speed (1 = 2.5 GT/s ... ) and width reported in LinkCap/LinkSta. Default 1 and 1. */
  linkSpeed?: number;
  /** Link width in lanes reported in LinkCap/LinkSta. Default 1. */
  linkWidth?: number;
}

export interface VendorCapabilityDescription extends CapabilityCommon {
  /** Vendor specific. */
  type: 'vendor';
  /** Bytes after the 3-byte header (ID, next, length); at most 253 of them. */
  data: Uint8Array;
  /** true: every data byte is writable; a Uint8Array: per-byte write masks. */
  writable?: boolean | Uint8Array;
}

/** A standard capability to place in config space (`type` tells which). */
export type CapabilityDescription =
  | PmCapabilityDescription
  | MsiCapabilityDescription
  | MsixCapabilityDescription
  | PcieCapabilityDescription
  | VendorCapabilityDescription;

/** Fields every extended capability description may carry. */
export interface ExtendedCapabilityCommon {
  /** Explicit offset (≥ 0x100, dword aligned). Omitted: placed automatically. */
  offset?: number;
  /** Guest writes to the capability are ignored. */
  readOnly?: boolean;
  /** The owner routes accesses to this capability itself (see CapabilityCommon.callback). */
  callback?: boolean;
}

/** A Device Serial Number extended capability. */
export interface DsnCapabilityDescription extends ExtendedCapabilityCommon {
  /** Device Serial Number. */
  type: 'dsn';
  /** The 64-bit serial number. */
  serial: bigint;
}

/** A vendor-specific extended capability (VSEC). */
export interface VendorExtendedCapabilityDescription extends ExtendedCapabilityCommon {
  /** Vendor specific (VSEC). */
  type: 'vendor';
  /** VSEC ID (vendor defined). */
  vsecId: number;
  /** VSEC revision. Default 0. */
  vsecRev?: number;
  /** Bytes after the 8-byte header. */
  data: Uint8Array;
  /** true: every data byte is writable; a Uint8Array: per-byte write masks. */
  writable?: boolean | Uint8Array;
}

/** An extended capability to place in PCIe config space (`type` tells which). */
export type ExtendedCapabilityDescription =
  | DsnCapabilityDescription
  | VendorExtendedCapabilityDescription;

/** What PciConfigSpace builds config space from (DeviceContext derives it from a DeviceDescription). */
export interface PciDeviceDescription {
  /** PCI Vendor ID. */
  vendorId: number;
  /** PCI Device ID. */
  deviceId: number;
  /** Subsystem Vendor ID. Default 0. */
  subsystemVendorId?: number;
  /** Subsystem ID. Default 0. */
  subsystemId?: number;
  /** `{base, sub, progIf}` or the 24-bit value `base << 16 | sub << 8 | progIf`. */
  classCode: ClassCode | number;
  /** Revision ID. Default 0. */
  revision?: number;
  /** PCI Express: 4096-byte config space (else 256). */
  express?: boolean;
  /** Interrupt Pin = 1 (INTA#). */
  intxPin?: boolean;
  /** Up to six entries, BAR0..BAR5; a mem64 BAR's odd partner must be empty. */
  bars?: (BarDescription | undefined)[];
  /** Expansion ROM BAR. */
  rom?: RomDescription;
  /** Standard capabilities, in list order. */
  capabilities?: CapabilityDescription[];
  /** Extended capabilities (needs `express`). */
  extendedCapabilities?: ExtendedCapabilityDescription[];
}

/** Where a capability ended up, as `listCapabilities()` reports it. */
export interface CapabilityInfo {
  /** Capability ID. */
  id: number;
  /** Config-space offset of its header. */
  offset: number;
  /** Bytes the capability occupies (its header included). */
  size: number;
  /** An extended (PCIe) capability. */
  extended: boolean;
  /** The description type it was built from. */
  type: CapabilityDescription['type'] | ExtendedCapabilityDescription['type'];
  /** Guest writes are ignored. */
  readOnly: boolean;
  /** Accesses are routed to the owner. */
  callback: boolean;
}

/** The MSI capability's state as the guest programmed it. */
export interface MsiState {
  /** MSI Enable. */
  enabled: boolean;
  /** Message Address (64 bits when address64). */
  address: bigint;
  /** Message Data. */
  data: number;
  /** Encoded Multiple Message Enable field (vectors = 1 << value). */
  multipleMessageEnable: number;
  /** Vectors the guest enabled: 1 << multipleMessageEnable. */
  vectors: number;
  /** Vectors the device supports (Multiple Message Capable). */
  capableVectors: number;
  /** 64-bit address capable. */
  address64: boolean;
  /** Per-vector masking capable. */
  perVectorMasking: boolean;
  /** Mask bits (0 without per-vector masking). */
  maskBits: number;
  /** Pending bits (0 without per-vector masking). */
  pendingBits: number;
}

/** The MSI-X capability's Message Control bits. */
export interface MsixControl {
  /** MSI-X Enable. */
  enabled: boolean;
  /** Function Mask: every vector masked. */
  functionMask: boolean;
}

/** Called by PciConfigSpace when a guest write changes something the device may care about. */
export interface PciConfigHooks {
  /** Command register changed (after the write). */
  onCommandChange?: (oldValue: number, newValue: number) => void;
  /** The guest initiated a Function Level Reset; config space is already reset. */
  onFlr?: () => void;
  /** The MSI capability changed (enable, address, data, masks). */
  onMsiChange?: (state: MsiState) => void;
  /** MSI-X Enable or Function Mask changed. */
  onMsixControlChange?: (control: MsixControl) => void;
  /**
   * A BAR register changed. `index` is 0..5 (a 64-bit BAR reports at its even
   * index with the full 64-bit register value) or 6 for the expansion ROM.
   */
  onBarChange?: (index: number, value: bigint) => void;
  /** PMCSR PowerState changed (0 = D0 ... 3 = D3hot). */
  onPowerStateChange?: (oldState: number, newState: number) => void;
}
