// The public shapes of the client library: options, what commands return,
// and the events a client emits.
import type { RegionInfo, SparseMmapArea } from '../protocol/region-info.js';
import type { RegionIoFdsReply } from '../protocol/region-io-fds.js';
import type { Payload } from '../transport/endpoint.js';
import type { Message } from '../transport/types.js';
import type { Logger } from '../util/logger.js';
import type { IrqEvent } from './irqs.js';

/** Options of VfioUserClient.connect(): what the client offers in VERSION, and its timeouts. */
export interface ClientOptions {
  /** Where the client logs (silent by default). */
  logger?: Logger;
  /** Largest DMA_READ/WRITE count we accept from the server (advertised). Default 1 MiB. */
  maxDataXferSize?: number;
  /** Advertised max_msg_fds. Default 16 (QEMU's value). */
  maxMsgFds?: number;
  /** Advertised max_dma_maps. Default 65535. */
  maxDmaMaps?: number;
  /** Advertised migration.max_bitmap_size. Default 256 MiB. */
  maxBitmapSize?: number;
  /** Offer write_multiple (REGION_WRITE_MULTI), as QEMU does. Default true. */
  writeMultiple?: boolean;
  /** Offer a twin socket for server→client DMA. Default false. */
  twinSocket?: boolean;
  /** Extra capability members (extensions), sent verbatim. */
  extensions?: Record<string, unknown>;
  /**
   * Ask for interrupts by message too (our x_vm_interrupt extension): each
   * one then also arrives as a message and shows as an 'irq' event with
   * via 'message'. Default false.
   */
  irqMessages?: boolean;
  /** Minor version we speak. Default 2 (libvfio-user's). */
  minor?: number;
  /** Reply timeout for every request. Default 5000 ms. */
  requestTimeoutMs?: number;
  /** Reply timeout for DEVICE_RESET (may take long). Default 30000 ms. */
  resetTimeoutMs?: number;
}

/** What the server told us in VERSION. */
export interface NegotiatedVersion {
  /** Protocol major (0). */
  major: number;
  /** Minor the server chose (at most ours). */
  minor: number;
  /** The server's capabilities JSON, if it sent one. */
  json: string | undefined;
}

/** A region's info, with the fd when one came and was asked for. */
export interface ClientRegionInfo extends RegionInfo {
  /** Sparse mmap areas (from the SPARSE_MMAP cap), relative to `offset`. */
  mmapAreas: SparseMmapArea[];
  /** TYPE cap, if any. */
  type?: { type: number; subtype: number };
  /**
   * The region fd the server attached (ownership passes to the caller) when
   * `keepFd` was set; otherwise it was closed and this is null.
   */
  fd: number | null;
}

export interface RegionIoFdsResult extends RegionIoFdsReply {
  /** The fds that came with the reply, referenced by entries' fdIndex. The caller owns (and must close) them. */
  fds: number[];
}

/** One mmapped area of a region. */
export interface MappedArea {
  /** Offset inside the region. */
  offset: number;
  /** Bytes mapped. */
  size: number;
  /** The mapping: shared with the device, writes are seen both ways. */
  bytes: Uint8Array;
}

/** A region the client mmapped (VfioUserClient.mapRegion): its areas share memory with the device. */
export interface MappedRegion {
  /** Region index. */
  index: number;
  /** The GET_REGION_INFO the mapping was made from. */
  info: ClientRegionInfo;
  /** The mapped areas, in region order. */
  areas: MappedArea[];
  /** The area covering [offset, offset+length) of the region, if one does. */
  areaAt(offset: number, length?: number): MappedArea | undefined;
  /** Unmaps every area; `bytes` of the areas must not be used afterwards. */
  unmap(): void;
}

/** Arguments of a raw DMA_MAP (VfioUserClient.dmaMap). */
export interface DmaMapArgs {
  /** Where the server sees the region. */
  iova: bigint | number;
  /** Bytes. */
  size: bigint | number;
  /** Offset of the region in `fd` (0 without fd). */
  offset?: bigint | number;
  /** File backing the region; the client keeps ownership (it is sent, not closed). */
  fd?: number;
  /** The device may read the region (DMA_MAP READ flag). */
  read: boolean;
  /** The device may write the region (DMA_MAP WRITE flag). */
  write: boolean;
}

/** A DMA_LOGGING_REPORT: one bit per page of the range, set when the device wrote the page. */
export interface DirtyReport {
  /** Start of the range reported on. */
  iova: bigint;
  /** Bytes of the range. */
  length: bigint;
  /** Bytes per bitmap bit. */
  pageSize: bigint;
  /** One bit per page, least significant bit first; set = written since the last report. */
  bitmap: Uint8Array;
}

/** Counters of server→client traffic the client served. */
export interface ServedStats {
  /** DMA_READ requests served. */
  dmaReads: number;
  /** DMA_WRITE requests served. */
  dmaWrites: number;
  /** Bytes the server read through DMA_READ. */
  dmaBytesRead: number;
  /** Bytes the server wrote through DMA_WRITE. */
  dmaBytesWritten: number;
  /** Requests that arrived on the twin socket. */
  twinRequests: number;
  /** Requests refused with an error reply. */
  errors: number;
}

/** Handler for a server→client command; the return value is the reply payload. */
export type ServerCommandHandler = (msg: Message) => Payload | void | Promise<Payload | void>;

/** Events a VfioUserClient emits. */
export interface ClientEvents {
  /** An interrupt the server signalled (eventfd or message). */
  irq: [IrqEvent];
  /** The connection is gone (server closed, or close()). */
  close: [err?: Error];
}
