// The shapes decodeConfigSpace() returns: the header, BARs and every
// capability it understands, as plain data.

/** A BAR as decodeConfigSpace reads it. */
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

/** The expansion ROM BAR as decodeConfigSpace reads it. */
export interface DecodedRom {
  raw: number;
  address: number;
  enabled: boolean;
  size?: number;
}

/** A decoded PCI Power Management capability. */
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

/** A decoded MSI capability. */
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

/** A decoded MSI-X capability: table size and where table and PBA live. */
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

/** A decoded PCI Express capability. */
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

/** A decoded vendor-specific capability (its bytes after the header). */
export interface DecodedVendorCap {
  kind: 'vendor';
  offset: number;
  id: number;
  next: number;
  length: number;
  data: Uint8Array;
}

/** A capability the decoder does not know; `name` is lspci's when it has one. */
export interface DecodedUnknownCap {
  kind: 'unknown';
  offset: number;
  id: number;
  next: number;
  name?: string;
}

/** A decoded standard capability (`kind` tells which). */
export type DecodedCapability = (DecodedPm | DecodedMsi | DecodedMsix | DecodedPcie | DecodedVendorCap | DecodedUnknownCap) & {
  /** The capability's bytes run past the end of the (standard) config space. */
  truncated?: boolean;
};

/** A decoded Device Serial Number extended capability. */
export interface DecodedDsn {
  kind: 'dsn';
  offset: number;
  id: number;
  version: number;
  next: number;
  serial: bigint;
}

/** A decoded vendor-specific extended capability (VSEC). */
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

/** An extended capability the decoder does not know. */
export interface DecodedUnknownExtCap {
  kind: 'unknown';
  offset: number;
  id: number;
  version: number;
  next: number;
  name?: string;
}

/** A decoded extended capability (`kind` tells which). */
export type DecodedExtendedCapability = (DecodedDsn | DecodedVendorExtCap | DecodedUnknownExtCap) & { truncated?: boolean };

/** Config space decoded field by field, as decodeConfigSpace returns it (`vfio-user probe` prints it). */
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

/** What decodeConfigSpace cannot read from config space itself: the BAR and ROM sizes. */
export interface DecodeOptions {
  /** Region sizes (e.g. from DEVICE_GET_REGION_INFO): BAR0..5; 0/undefined = unimplemented. */
  barSizes?: (number | bigint | undefined)[];
  romSize?: number;
}
