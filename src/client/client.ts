import { native } from '../native/binding.js';
import { Command } from '../protocol/commands.js';
import { DeviceFeature, DeviceFeatureFlags, DmaMapFlags, DmaUnmapFlags, SetIrqsFlags } from '../protocol/constants.js';
import {
  decodeDeviceFeatureReply,
  decodeDmaLoggingReport,
  decodeMigDeviceState,
  decodeMigrationData,
  encodeDeviceFeatureRequest,
  encodeDmaLoggingControl,
  encodeDmaLoggingReportRequest,
  encodeMigDeviceState,
  featureFlags,
  type DecodedDeviceFeature,
  type DmaLoggingRange,
} from '../protocol/device-feature.js';
import { bitmapByteSize } from '../protocol/dirty-bitmap.js';
import { decodeDeviceInfoReply, encodeDeviceInfoRequest, type DeviceInfo } from '../protocol/device-info.js';
import { decodeDmaMapReply, decodeDmaUnmapReply, encodeDmaMapRequest, encodeDmaUnmapRequest, type DmaUnmapReply } from '../protocol/dma-map.js';
import { decodeEmptyPayload } from '../protocol/empty.js';
import { Errno } from '../protocol/errno.js';
import { RemoteError } from '../protocol/errors.js';
import { decodeIrqInfoReply, encodeIrqInfoRequest, type IrqInfo } from '../protocol/irq-info.js';
import { decodeMigDataReadReply, decodeMigDataWriteReply, encodeMigDataReadRequest, encodeMigDataWriteRequestParts } from '../protocol/mig-data.js';
import { decodeRegionReadReply, decodeRegionWriteReply, encodeRegionReadRequest, encodeRegionWriteRequestParts } from '../protocol/region-access.js';
import { decodeRegionInfoReply, encodeRegionInfoRequest, isSparseMmapCap, isTypeCap, REGION_INFO_SIZE } from '../protocol/region-info.js';
import { decodeRegionIoFdsReply, encodeRegionIoFdsRequest, REGION_IO_FDS_HEADER_SIZE, type IoFdLayout } from '../protocol/region-io-fds.js';
import { decodeSetIrqsReply, encodeSetIrqsRequest, type SetIrqsRequest } from '../protocol/set-irqs.js';
import { decodeWriteMultiReply, encodeWriteMultiRequest, WRITE_MULTI_MAX_DATA, type WriteMultiEntry } from '../protocol/write-multi.js';
import { SocketTransport } from '../transport/socket-transport.js';
import type { Transport } from '../transport/types.js';
import { badReply, ClientError, ClientErrorCode, invalidArg, refusedConnection, toBig } from './errors.js';
import { GuestMemory, type GuestMemoryOptions } from './guest-memory.js';
import { irqIndexOf, type IrqTypeLike } from './irqs.js';
import { mmapRegion } from './region-map.js';
import { ClientSession } from './session.js';
import type {
  ClientOptions,
  ClientRegionInfo,
  DirtyReport,
  DmaMapArgs,
  MappedRegion,
  RegionIoFdsResult,
  ServerCommandHandler,
} from './types.js';

/**
 * A vfio-user client: connects to a device server, negotiates VERSION and
 * offers every command as a typed method. It also plays the VM's part: guest
 * memory the server can DMA into (served over messages when mapped without
 * fd), interrupt eventfds, and mmapped device regions.
 */
export class VfioUserClient extends ClientSession {
  private constructor(transport: Transport, opts: ClientOptions) {
    super(transport, opts);
  }

  /** Connects to a server's UNIX socket and negotiates. */
  static async connect(path: string, opts: ClientOptions = {}): Promise<VfioUserClient> {
    const fd = native.connect(path);
    let transport: SocketTransport;
    try {
      transport = new SocketTransport(fd, VfioUserClient.transportLimits(opts.maxDataXferSize));
    } catch (e) {
      native.close(fd);
      throw e;
    }
    try {
      return await VfioUserClient.over(transport, opts);
    } catch (e) {
      // Name the socket: "/run/dev.sock: the server refused the connection: another client is attached (EBUSY)".
      if (e instanceof ClientError && e.code === ClientErrorCode.REFUSED && e.cause instanceof RemoteError) throw refusedConnection(e.cause, path);
      throw e;
    }
  }

  /** Negotiates over a transport (an in-memory pair in tests, or a socket you connected). @internal */
  static async over(transport: Transport, opts: ClientOptions = {}): Promise<VfioUserClient> {
    const c = new VfioUserClient(transport, opts);
    try {
      await c.negotiate();
    } catch (e) {
      await c.close().catch(() => {});
      throw e;
    }
    return c;
  }

  // ---- device info, regions, IRQs ---------------------------------------------------

  /** GET_INFO: device flags and the numbers of regions and interrupt indexes. */
  async getDeviceInfo(): Promise<DeviceInfo> {
    const m = await this.request(Command.DEVICE_GET_INFO, encodeDeviceInfoRequest());
    return this.decode(Command.DEVICE_GET_INFO, () => decodeDeviceInfoReply(m.payload));
  }

  /**
   * DEVICE_GET_REGION_INFO with the argsz retry: first 32 bytes, then the
   * argsz the server asked for (caps and the region fd come only then).
   * With keepFd the fd is handed to the caller, else closed.
   */
  async getRegionInfo(index: number, opts: { keepFd?: boolean } = {}): Promise<ClientRegionInfo> {
    let argsz = REGION_INFO_SIZE;
    for (let attempt = 0; attempt < 4; attempt++) {
      const m = await this.request(Command.DEVICE_GET_REGION_INFO, encodeRegionInfoRequest({ argsz, index }), { keepFds: true });
      let keep = false;
      try {
        const info = this.decode(Command.DEVICE_GET_REGION_INFO, () => decodeRegionInfoReply(m.payload));
        if (info.argsz > argsz && info.argsz > m.payload.length) {
          if (info.argsz > 1048576) throw badReply(Command.DEVICE_GET_REGION_INFO, new Error(`argsz ${info.argsz} is absurd`));
          argsz = info.argsz;
          continue;
        }
        if (m.fds.length > 1) this.log.warn(`region ${index}: ${m.fds.length} fds, using the first`);
        const fd = m.fds[0] ?? null;
        keep = opts.keepFd === true && fd !== null;
        const out: ClientRegionInfo = { ...info, mmapAreas: [], fd: keep ? fd : null };
        for (const c of info.caps) {
          if (isSparseMmapCap(c)) out.mmapAreas.push(...c.areas);
          else if (isTypeCap(c)) out.type = { type: c.type, subtype: c.subtype };
        }
        return out;
      } finally {
        this.endpoint.transport.releaseFds(keep ? m.fds.slice(1) : m.fds);
      }
    }
    throw badReply(Command.DEVICE_GET_REGION_INFO, new Error('argsz kept growing'));
  }

  /**
   * DEVICE_GET_REGION_IO_FDS with the argsz retry. The returned fds belong
   * to the caller. Layout 'spec' (40-byte entries, ours) or 'lvu' (48).
   */
  async getRegionIoFds(index: number, opts: { layout?: IoFdLayout } = {}): Promise<RegionIoFdsResult> {
    let argsz = REGION_IO_FDS_HEADER_SIZE;
    const layout = opts.layout ?? 'spec';
    for (let attempt = 0; attempt < 4; attempt++) {
      const m = await this.request(Command.DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest({ argsz, index }), { keepFds: true });
      let ok = false;
      try {
        const r = this.decode(Command.DEVICE_GET_REGION_IO_FDS, () => decodeRegionIoFdsReply(m.payload, { layout }));
        if (r.count > 0 && r.entries.length === 0 && r.argsz > argsz) {
          argsz = r.argsz;
          continue;
        }
        ok = true;
        return { ...r, fds: m.fds };
      } finally {
        if (!ok) this.endpoint.transport.releaseFds(m.fds);
      }
    }
    throw badReply(Command.DEVICE_GET_REGION_IO_FDS, new Error('argsz kept growing'));
  }

  /** GET_IRQ_INFO for an interrupt type (or index): its flags and vector count. */
  async getIrqInfo(index: IrqTypeLike): Promise<IrqInfo> {
    const m = await this.request(Command.DEVICE_GET_IRQ_INFO, encodeIrqInfoRequest({ index: irqIndexOf(index) }));
    return this.decode(Command.DEVICE_GET_IRQ_INFO, () => decodeIrqInfoReply(m.payload));
  }

  /** Raw DEVICE_SET_IRQS; `fds` (eventfds) are sent, not closed. */
  async setIrqs(req: SetIrqsRequest, fds?: readonly number[]): Promise<void> {
    const m = await this.request(Command.DEVICE_SET_IRQS, encodeSetIrqsRequest(req), fds && fds.length > 0 ? { fds } : {});
    this.decode(Command.DEVICE_SET_IRQS, () => decodeSetIrqsReply(m.payload));
  }

  /**
   * Creates `count` non-blocking eventfds, hands them to the server for
   * vectors start..start+count-1 (SET_IRQS EVENTFD|TRIGGER, in batches of the
   * server's max_msg_fds) and watches them: signals show up as 'irq' events
   * and through waitForIrq(). The client owns and closes them.
   */
  async enableIrqEventfds(type: IrqTypeLike, start = 0, count = 1): Promise<number[]> {
    this.assertOpen();
    const index = irqIndexOf(type);
    if (!Number.isInteger(start) || start < 0 || !Number.isInteger(count) || count < 1) throw invalidArg('bad start/count');
    const fds = this.irqs.create(count);
    const batch = Math.max(1, this.serverCaps.maxMsgFds);
    let sent = 0;
    try {
      for (; sent < count; sent += batch) {
        const part = fds.slice(sent, sent + batch);
        await this.setIrqs({ flags: SetIrqsFlags.DATA_EVENTFD | SetIrqsFlags.ACTION_TRIGGER, index, start: start + sent, count: part.length }, part);
        this.irqs.watch(index, start + sent, part);
      }
    } catch (e) {
      for (const fd of fds.slice(sent)) native.close(fd);
      throw e;
    }
    return fds;
  }

  /** SET_IRQS NONE|TRIGGER count 0: the server drops every eventfd of the type; ours are closed. */
  async disableIrqs(type: IrqTypeLike): Promise<void> {
    const index = irqIndexOf(type);
    try {
      await this.setIrqs({ flags: SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER, index, start: 0, count: 0 });
    } finally {
      this.irqs.unwatchIndex(index);
    }
  }

  /** SET_IRQS MASK of `count` vectors from `vector`: the server holds their interrupts as pending. */
  async maskIrq(type: IrqTypeLike, vector = 0, count = 1): Promise<void> {
    await this.setIrqs({ flags: SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_MASK, index: irqIndexOf(type), start: vector, count });
  }

  /** SET_IRQS UNMASK of `count` vectors from `vector`: pending interrupts are delivered now. */
  async unmaskIrq(type: IrqTypeLike, vector = 0, count = 1): Promise<void> {
    await this.setIrqs({ flags: SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_UNMASK, index: irqIndexOf(type), start: vector, count });
  }

  /** Loopback: asks the server to fire the vectors itself (SET_IRQS NONE|TRIGGER count > 0). */
  async triggerIrq(type: IrqTypeLike, vector = 0, count = 1): Promise<void> {
    await this.setIrqs({ flags: SetIrqsFlags.DATA_NONE | SetIrqsFlags.ACTION_TRIGGER, index: irqIndexOf(type), start: vector, count });
  }

  /**
   * Resolves with how many times the vector fired since last taken (at once
   * if it already did, else at the next signal). Rejects with code
   * ERR_VFIO_USER_IRQ_TIMEOUT after timeoutMs (default 5000; 0 = forever).
   */
  waitForIrq(type: IrqTypeLike, vector = 0, opts: { timeoutMs?: number } = {}): Promise<number> {
    return this.irqs.waitFor(irqIndexOf(type), vector, opts.timeoutMs ?? 5000);
  }

  /** Signals seen but not yet taken by waitForIrq. */
  pendingIrqs(type: IrqTypeLike, vector = 0): number {
    return this.irqs.pending(irqIndexOf(type), vector);
  }

  /**
   * Records an interrupt delivered by other means than an eventfd (hook for
   * the message-delivered interrupt extension): emits 'irq' and wakes waiters.
   */
  notifyIrq(type: IrqTypeLike, vector = 0, count = 1, via = 'message'): void {
    this.irqs.signal(irqIndexOf(type), vector, count, via);
  }

  // ---- region access --------------------------------------------------------------------

  /** REGION_READ, split into messages of at most the server's max_data_xfer_size. */
  async regionRead(index: number, offset: bigint | number, count: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(count) || count < 0) throw invalidArg(`bad count ${count}`);
    const base = toBig(offset);
    const out = new Uint8Array(count);
    const chunk = this.xferChunk;
    for (let done = 0; done < count || (count === 0 && done === 0); ) {
      const n = Math.min(chunk, count - done);
      const m = await this.request(Command.REGION_READ, encodeRegionReadRequest({ offset: base + BigInt(done), region: index, count: n }));
      if (n === 0) break;
      const r = this.decode(Command.REGION_READ, () => decodeRegionReadReply(m.payload));
      if (r.count !== n || r.data.length !== n) throw badReply(Command.REGION_READ, new Error(`asked ${n} bytes, got ${r.data.length}`));
      out.set(r.data, done);
      done += n;
    }
    return out;
  }

  /** REGION_WRITE, split like regionRead. Resolves once the server answered every piece. */
  async regionWrite(index: number, offset: bigint | number, data: Uint8Array): Promise<void> {
    const base = toBig(offset);
    const chunk = this.xferChunk;
    for (let done = 0; done < data.length || (data.length === 0 && done === 0); ) {
      const n = Math.min(chunk, data.length - done);
      const m = await this.request(Command.REGION_WRITE, encodeRegionWriteRequestParts({ offset: base + BigInt(done), region: index, count: n, data: data.subarray(done, done + n) }));
      if (n === 0) break;
      const r = this.decode(Command.REGION_WRITE, () => decodeRegionWriteReply(m.payload));
      if (r.count !== n) throw badReply(Command.REGION_WRITE, new Error(`wrote ${r.count} of ${n} bytes`));
      done += n;
    }
  }

  /**
   * Posted REGION_WRITE (NO_REPLY), like QEMU's BAR writes. Nothing comes
   * back on success; a server may still send an error reply, which is
   * logged as stray. Returns false under send back-pressure.
   */
  regionWritePosted(index: number, offset: bigint | number, data: Uint8Array): boolean {
    this.assertOpen();
    const base = toBig(offset);
    const chunk = this.xferChunk;
    let ok = true;
    for (let done = 0; done < data.length; done += chunk) {
      const n = Math.min(chunk, data.length - done);
      ok = this.endpoint.post(Command.REGION_WRITE, encodeRegionWriteRequestParts({ offset: base + BigInt(done), region: index, count: n, data: data.subarray(done, done + n) })) && ok;
    }
    return ok;
  }

  /**
   * REGION_WRITE_MULTI: up to 8 bytes per entry. Needs the server's
   * write_multiple (else ERR_VFIO_USER_UNSUPPORTED, unless force). With
   * noReply it is posted and resolves with null; else with wr_cnt.
   */
  async regionWriteMulti(
    entries: { region: number; offset: bigint | number; data: Uint8Array }[],
    opts: { noReply?: boolean; force?: boolean } = {},
  ): Promise<bigint | null> {
    this.assertOpen();
    if (!this.serverCaps.writeMultiple && !opts.force) throw new ClientError(ClientErrorCode.UNSUPPORTED, 'server did not advertise write_multiple');
    const wire: WriteMultiEntry[] = entries.map((e, i) => {
      if (e.data.length > WRITE_MULTI_MAX_DATA) throw invalidArg(`entry ${i}: ${e.data.length} bytes > ${WRITE_MULTI_MAX_DATA}`);
      const data = new Uint8Array(WRITE_MULTI_MAX_DATA);
      data.set(e.data);
      return { region: e.region, offset: toBig(e.offset), count: e.data.length, data: data.subarray(0, e.data.length) };
    });
    const payload = encodeWriteMultiRequest({ entries: wire });
    if (opts.noReply) {
      this.endpoint.post(Command.REGION_WRITE_MULTI, payload);
      return null;
    }
    const m = await this.request(Command.REGION_WRITE_MULTI, payload);
    return this.decode(Command.REGION_WRITE_MULTI, () => decodeWriteMultiReply(m.payload)).wrCnt;
  }

  /**
   * mmaps every sparse area of a mappable region (MMAP flag and an fd).
   * Areas are shared with the device: what one side writes the other sees.
   */
  async mapRegion(index: number): Promise<MappedRegion> {
    const info = await this.getRegionInfo(index, { keepFd: true });
    const fd = info.fd;
    try {
      const region = mmapRegion(index, info, fd, (r) => this.regionMaps.delete(r));
      this.regionMaps.add(region);
      return region;
    } finally {
      if (fd !== null) native.close(fd);
    }
  }

  // ---- DMA --------------------------------------------------------------------------------

  /** Raw DMA_MAP. `fd` is sent, not closed (the server gets its own copy). */
  async dmaMap(a: DmaMapArgs): Promise<void> {
    const flags = (a.read ? DmaMapFlags.READ : 0) | (a.write ? DmaMapFlags.WRITE : 0);
    const payload = encodeDmaMapRequest({ flags, offset: toBig(a.offset ?? 0), address: toBig(a.iova), size: toBig(a.size) });
    const m = await this.request(Command.DMA_MAP, payload, a.fd !== undefined && a.fd >= 0 ? { fds: [a.fd] } : {});
    this.decode(Command.DMA_MAP, () => decodeDmaMapReply(m.payload));
  }

  /** DMA_UNMAP of exactly one earlier map. Guest memory at that range stops being served. */
  async dmaUnmap(iova: bigint | number, size: bigint | number): Promise<DmaUnmapReply> {
    const address = toBig(iova);
    const sz = toBig(size);
    const m = await this.request(Command.DMA_UNMAP, encodeDmaUnmapRequest({ flags: 0, address, size: sz }));
    for (const mem of this.served.memories) if (mem.iova === address && BigInt(mem.size) === sz) mem.mapped = false;
    return this.decode(Command.DMA_UNMAP, () => decodeDmaUnmapReply(m.payload));
  }

  /** DMA_UNMAP with FLAG_ALL (address and size 0). */
  async dmaUnmapAll(): Promise<DmaUnmapReply> {
    const m = await this.request(Command.DMA_UNMAP, encodeDmaUnmapRequest({ flags: DmaUnmapFlags.ALL, address: 0n, size: 0n }));
    for (const mem of this.served.memories) mem.mapped = false;
    return this.decode(Command.DMA_UNMAP, () => decodeDmaUnmapReply(m.payload));
  }

  /**
   * Creates guest memory (memfd + mmap, owned by the client) and DMA_MAPs
   * it, with its fd when useFd (the server then reaches it directly) or
   * without (the server goes through DMA_READ/DMA_WRITE, served here from
   * the same memory). memory.unmap() undoes both; close() frees it.
   */
  async createGuestMemory(opts: GuestMemoryOptions): Promise<GuestMemory> {
    this.assertOpen();
    if (!Number.isSafeInteger(opts.size) || opts.size <= 0 || opts.size % 4096 !== 0) throw invalidArg(`guest memory size ${opts.size} must be a positive multiple of 4096`);
    if (opts.size > 0x100000000) throw invalidArg('guest memory larger than 4 GiB');
    const iova = toBig(opts.iova);
    for (const m of this.served.memories) {
      if (iova < m.iova + BigInt(m.size) && m.iova < iova + BigInt(opts.size)) throw invalidArg(`guest memory at 0x${iova.toString(16)} overlaps 0x${m.iova.toString(16)}`);
    }
    const mem = new GuestMemory(opts);
    try {
      await this.dmaMap({ iova, size: opts.size, read: true, write: !mem.readOnly, ...(opts.useFd ? { fd: mem.fd, offset: 0 } : {}) });
    } catch (e) {
      mem.free();
      throw e;
    }
    mem.mapped = true;
    this.served.memories.add(mem);
    mem.unmapHook = async (m) => {
      try {
        if (m.mapped && !this.closedFlag && !this.closing) await this.dmaUnmap(m.iova, m.size);
      } finally {
        this.served.memories.delete(m);
      }
    };
    return mem;
  }

  /**
   * Maps memory another client created (same memfd, same IOVA and access) on
   * this client's server: after a migration, the destination reaches the
   * guest memory the source did.
   */
  async adoptGuestMemory(m: GuestMemory): Promise<GuestMemory> {
    return this.createGuestMemory({ iova: m.iova, size: m.size, useFd: m.useFd, readOnly: m.readOnly, fromFd: m.fd });
  }

  /** Guest memories currently known to the client. */
  guestMemories(): GuestMemory[] {
    return [...this.served.memories];
  }

  /**
   * Registers a handler for a server→client command other than
   * DMA_READ/DMA_WRITE (extensions, e.g. message-delivered interrupts).
   * The handler's result is the reply payload; a throw becomes an error
   * reply (its errno, or EINVAL). Without a handler: ENOSYS.
   */
  onServerCommand(command: number, handler: ServerCommandHandler | null): void {
    if (handler) this.served.commands.set(command, handler);
    else this.served.commands.delete(command);
  }

  // ---- reset, features, migration -----------------------------------------------------------

  /** DEVICE_RESET (waits up to `resetTimeoutMs`, 30 s by default). */
  async reset(): Promise<void> {
    const m = await this.request(Command.DEVICE_RESET, undefined, { timeoutMs: this.opts.resetTimeoutMs });
    this.decode(Command.DEVICE_RESET, () => decodeEmptyPayload(m.payload, 'DEVICE_RESET reply'));
  }

  /**
   * Raw DEVICE_FEATURE: `flags` (feature index | GET/SET/PROBE) and data.
   * argsz defaults to 8 + data (enough for SET/PROBE echoes); pass the
   * expected reply size for a GET.
   */
  async deviceFeature(flags: number, data: Uint8Array = new Uint8Array(0), argsz?: number): Promise<DecodedDeviceFeature> {
    const payload = encodeDeviceFeatureRequest({ flags, data, ...(argsz !== undefined ? { argsz } : {}) });
    const m = await this.request(Command.DEVICE_FEATURE, payload);
    return this.decode(Command.DEVICE_FEATURE, () => decodeDeviceFeatureReply(m.payload));
  }

  /** PROBE of a feature: true when supported, false on EINVAL/ENOTTY/ENOTSUP. */
  async probeFeature(feature: number, ops: number = DeviceFeatureFlags.GET): Promise<boolean> {
    try {
      await this.deviceFeature(featureFlags(feature, ops | DeviceFeatureFlags.PROBE));
      return true;
    } catch (e) {
      if (e instanceof RemoteError && (e.errno === Errno.EINVAL || e.errno === Errno.ENOTTY || e.errno === Errno.ENOTSUP)) return false;
      throw e;
    }
  }

  /** GET MIGRATION: VFIO_MIGRATION_* flags (STOP_COPY 1, P2P 2, PRE_COPY 4). */
  async getMigrationFlags(): Promise<bigint> {
    const r = await this.deviceFeature(featureFlags(DeviceFeature.MIGRATION, DeviceFeatureFlags.GET), new Uint8Array(8), 16);
    return this.decode(Command.DEVICE_FEATURE, () => decodeMigrationData(r.data));
  }

  /** GET MIG_DEVICE_STATE (DeviceState value). */
  async getDeviceState(): Promise<number> {
    const r = await this.deviceFeature(featureFlags(DeviceFeature.MIG_DEVICE_STATE, DeviceFeatureFlags.GET), new Uint8Array(8), 16);
    return this.decode(Command.DEVICE_FEATURE, () => decodeMigDeviceState(r.data)).deviceState;
  }

  /** SET MIG_DEVICE_STATE; resolves once the (possibly multi-hop) transition is done. */
  async setDeviceState(state: number): Promise<void> {
    const data = encodeMigDeviceState({ deviceState: state, dataFd: -1 });
    const r = await this.deviceFeature(featureFlags(DeviceFeature.MIG_DEVICE_STATE, DeviceFeatureFlags.SET), data);
    const s = this.decode(Command.DEVICE_FEATURE, () => decodeMigDeviceState(r.data));
    if (s.deviceState !== state) throw badReply(Command.DEVICE_FEATURE, new Error(`state echo ${s.deviceState} ≠ ${state}`));
  }

  /** SET DMA_LOGGING_START (no ranges = everything). */
  async startDirtyLogging(pageSize: number | bigint = 4096, ranges: DmaLoggingRange[] = []): Promise<void> {
    await this.deviceFeature(featureFlags(DeviceFeature.DMA_LOGGING_START, DeviceFeatureFlags.SET), encodeDmaLoggingControl({ pageSize: toBig(pageSize), ranges }));
  }

  /** DMA_LOGGING_STOP: the server stops tracking dirty guest pages. */
  async stopDirtyLogging(): Promise<void> {
    await this.deviceFeature(featureFlags(DeviceFeature.DMA_LOGGING_STOP, DeviceFeatureFlags.SET));
  }

  /**
   * GET DMA_LOGGING_REPORT (read-and-clear) of the server's dirty pages in
   * [iova, iova+length). Pages written by DMA messages are not in it: take
   * those from memory.takeClientDirty().
   */
  async dirtyReport(iova: bigint | number, length: bigint | number, pageSize: bigint | number = 4096): Promise<DirtyReport> {
    const req = { iova: toBig(iova), length: toBig(length), pageSize: toBig(pageSize) };
    let bytes: number;
    try {
      bytes = bitmapByteSize(req.length, req.pageSize);
    } catch (e) {
      throw invalidArg((e as Error).message);
    }
    const r = await this.deviceFeature(featureFlags(DeviceFeature.DMA_LOGGING_REPORT, DeviceFeatureFlags.GET), encodeDmaLoggingReportRequest(req), 8 + 24 + bytes);
    return this.decode(Command.DEVICE_FEATURE, () => decodeDmaLoggingReport(r.data));
  }

  /**
   * The dirty pages of a guest memory: the server's report (fd-mapped
   * memory) OR the pages the client wrote for the server's DMA messages.
   * Both are read-and-clear.
   */
  async collectDirty(mem: GuestMemory, pageSize = 4096): Promise<Uint8Array> {
    const bm = mem.takeClientDirty(pageSize);
    if (mem.useFd && mem.mapped) {
      const r = await this.dirtyReport(mem.iova, mem.size, pageSize);
      for (let i = 0; i < bm.length; i++) bm[i]! |= r.bitmap[i]!;
    }
    return bm;
  }

  /** MIG_DATA_READ of up to `size` bytes (one message, ≤ server max). size 0 in the result = no more data. */
  async migDataRead(size: number): Promise<{ data: Uint8Array; size: number }> {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.xferChunk) throw invalidArg(`MIG_DATA_READ size ${size} outside 0..${this.xferChunk}`);
    const m = await this.request(Command.MIG_DATA_READ, encodeMigDataReadRequest({ size }));
    const r = this.decode(Command.MIG_DATA_READ, () => decodeMigDataReadReply(m.payload));
    if (r.size > size) throw badReply(Command.MIG_DATA_READ, new Error(`returned ${r.size} > ${size} bytes`));
    return { data: r.data, size: r.size };
  }

  /**
   * MIG_DATA_WRITE, split into messages of at most the server's
   * max_data_xfer_size of data each (the limit is on `size`, as for
   * REGION_WRITE's count: a whole MIG_DATA_READ chunk goes in one message).
   */
  async migDataWrite(data: Uint8Array): Promise<void> {
    const chunk = this.xferChunk;
    for (let done = 0; done < data.length; done += chunk) {
      const m = await this.request(Command.MIG_DATA_WRITE, encodeMigDataWriteRequestParts(data.subarray(done, Math.min(done + chunk, data.length))));
      this.decode(Command.MIG_DATA_WRITE, () => decodeMigDataWriteReply(m.payload));
    }
  }
}
