import type { BarKind, CapabilityDescription, ClassCode, ExtendedCapabilityDescription } from '../pci/types.js';
import type { DmaRegionInfo } from './dma-table.js';
import type { IrqCounts } from './irqs.js';

/** Why the device is being reset. */
export type ResetReason =
  /** The client sent DEVICE_RESET. */
  | 'device-reset'
  /** The client went away; the next client finds the device as the reset left it. */
  | 'lost-connection'
  /** The guest set Initiate Function Level Reset in the PCIe Device Control register. */
  | 'flr';

/** Reads `count` bytes at `offset` of a region. May be async. */
export type RegionReadHandler = (offset: number, count: number) => Uint8Array | Promise<Uint8Array>;
/** Writes `data` at `offset` of a region. May be async. */
export type RegionWriteHandler = (offset: number, data: Uint8Array) => void | Promise<void>;
/**
 * Reads `count` bytes at `offset` of a region into `out` at `outOffset`,
 * synchronously. The allocation-free form of {@link RegionReadHandler}: the
 * library passes the buffer the reply is built in, so a read costs no
 * allocation at all. `out` is only valid during the call.
 */
export type RegionReadIntoHandler = (offset: number, count: number, out: Uint8Array, outOffset: number) => void;
/**
 * Writes the `count` bytes at `src[srcOffset]` at `offset` of a region,
 * synchronously. The allocation-free form of {@link RegionWriteHandler}:
 * `src` is the library's receive buffer, valid only during the call (copy
 * what you keep).
 */
export type RegionWriteFromHandler = (offset: number, src: Uint8Array, srcOffset: number, count: number) => void;

/** An mmap-able window of a shared-memory region, relative to the region. */
export interface MmapArea {
  /** Bytes from the start of the region; page aligned. */
  offset: number;
  /** Bytes; a multiple of the page size. */
  size: number;
}

/** A region of a DeviceDescription: its size and type, how accesses are served, and whether the client may mmap it. */
export interface RegionSpec {
  /** Bytes. BARs must be powers of two (at least 16 for memory, 4 for I/O). */
  size: number;
  /** Default true. */
  readable?: boolean;
  /** Default true. */
  writable?: boolean;
  /** BAR type (regions 0-5). Default 'mem32'. */
  kind?: BarKind;
  /** Memory BARs only: mark the BAR prefetchable. */
  prefetchable?: boolean;
  /** Access callbacks. Without them a shared region reads/writes its memory; others refuse the access. */
  read?: RegionReadHandler;
  /** Write callback (see `read`). */
  write?: RegionWriteHandler;
  /**
   * Synchronous reads into a buffer the library provides (no allocation per
   * access). When present it serves every read and `read` is not called.
   */
  readInto?: RegionReadIntoHandler;
  /**
   * Synchronous writes from the library's receive buffer (no allocation per
   * access). When present it serves every write and `write` is not called.
   */
  writeFrom?: RegionWriteFromHandler;
  /**
   * Back the region with shared memory (a sealed memfd) that the client may
   * mmap; `mmapAreas` limits which parts (default: all of it). The device
   * sees the same bytes through `ctx.region(i).memory`.
   */
  shared?: boolean | { mmapAreas?: MmapArea[] };
}

/** Config-space takeover: every access to region 7 goes here instead of the built-in model. */
export interface ConfigAccessHandlers {
  /** Serves every config-space read. */
  read: RegionReadHandler;
  /** Serves every config-space write. */
  write: RegionWriteHandler;
}

/** State a migration callback is told about (VFIO device states by name). */
export type MigrationStateName = 'STOP' | 'RUNNING' | 'STOP_COPY' | 'RESUMING' | 'PRE_COPY' | 'ERROR';

/** Live migration (v2) of a device: state transitions and the device-state stream. stateMigration() builds them from save/load. */
export interface MigrationCallbacks {
  /**
   * One hop of the state machine, in order; a composite request calls this
   * once per hop. Throwing fails the request: the device stays in the last
   * state reached (or ERROR when `to` was RESUMING->STOP data validation).
   */
  transition(to: MigrationStateName, from: MigrationStateName): void | Promise<void>;
  /**
   * Produce the next bytes of the device state stream, at most `max`. Return
   * an empty array when there is no more (in PRE_COPY: nothing more for now).
   */
  read(max: number): Uint8Array | Promise<Uint8Array>;
  /** Consume the next bytes of the stream on the destination (RESUMING). */
  write(data: Uint8Array): void | Promise<void>;
  /** Advertise and allow PRE_COPY. Default true. */
  preCopy?: boolean;
}

/** Told when the client maps and unmaps guest memory. */
export interface DmaCallbacks {
  /** A region was mapped (guest memory now reachable at info.iova). */
  onMap?(info: DmaRegionInfo): void | Promise<void>;
  /**
   * A region is going away: stop using it. The unmap is answered only after
   * this resolves and every view and worker mapping is revoked.
   */
  onUnmap?(info: DmaRegionInfo): void | Promise<void>;
}

/** A device described as data, plus the callbacks its business logic needs. */
export interface DeviceDescription {
  /** PCI Vendor ID. */
  vendorId: number;
  /** PCI Device ID. */
  deviceId: number;
  /** Subsystem Vendor ID. Default 0. */
  subsystemVendorId?: number;
  /** Subsystem ID. Default 0. */
  subsystemId?: number;
  /** `{ base, sub, progIf }` or the 24-bit value. Default 0. */
  classCode?: ClassCode | number;
  /** Revision ID. Default 0. */
  revision?: number;
  /** PCI Express device: 4096-byte config space. */
  express?: boolean;
  /** Standard capabilities, in list order (PM, MSI, MSI-X, PCIe, vendor). */
  capabilities?: CapabilityDescription[];
  /** Extended capabilities (Express devices only): DSN, vendor. */
  extendedCapabilities?: ExtendedCapabilityDescription[];
  /** Regions by index: 0-5 BARs, 6 expansion ROM, 8 VGA. (7, config space, is built from the fields above.) */
  regions?: Partial<Record<0 | 1 | 2 | 3 | 4 | 5 | 6 | 8, RegionSpec>>;
  /** Take over config-space accesses entirely. */
  config?: ConfigAccessHandlers;
  /** Vectors per interrupt type. MSI-X defaults to the MSI-X capability's table size; ERR and REQ to 1. */
  irqs?: IrqCounts;
  /** Told about guest memory maps and unmaps. */
  dma?: DmaCallbacks;
  /** Device reset. Must stop DMA and interrupts before resolving. */
  reset?(reason: ResetReason): void | Promise<void>;
  /**
   * Called before DMA map/unmap, reset, migration state changes and
   * disconnect handling; the command queue waits until it resolves.
   */
  quiesce?(): void | Promise<void>;
  /** Called when the operation that needed quiesce is over: the device may start work again. */
  resume?(): void | Promise<void>;
  /** Live migration; without it the device does not advertise migration. See stateMigration(). */
  migration?: MigrationCallbacks;
}
