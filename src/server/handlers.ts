import { native } from '../native/binding.js';
import { Command, commandName } from '../protocol/commands.js';
import { DeviceInfoFlags, DmaMapFlags, DmaUnmapFlags, IoFdType, KvmIoeventfdFlags, NUM_IRQS, NUM_REGIONS } from '../protocol/constants.js';
import { decodeDeviceFeatureRequest } from '../protocol/device-feature.js';
import { decodeDeviceInfoRequest, encodeDeviceInfoReply } from '../protocol/device-info.js';
import { decodeDmaMapRequest, decodeDmaUnmapRequest, encodeDmaUnmapReply } from '../protocol/dma-map.js';
import { Errno } from '../protocol/errno.js';
import { ProtocolError } from '../protocol/errors.js';
import { CAP_X_IRQ_MESSAGES } from '../protocol/extensions.js';
import { FLAG_NO_REPLY, FLAGS_KNOWN, isCommand, TYPE_REPLY, type MessageHeader } from '../protocol/header.js';
import { decodeIrqInfoRequest, encodeIrqInfoReply } from '../protocol/irq-info.js';
import { decodeMigDataReadRequest, decodeMigDataWriteRequest } from '../protocol/mig-data.js';
import { decodeRegionReadRequest, decodeRegionWriteRequest, encodeRegionReadReply, encodeRegionReadReplyParts, encodeRegionWriteReply } from '../protocol/region-access.js';
import { buildRegionInfoReply, decodeRegionInfoRequest } from '../protocol/region-info.js';
import { buildRegionIoFdsReply, decodeRegionIoFdsRequest, type IoFdEntry } from '../protocol/region-io-fds.js';
import { decodeSetIrqsRequest } from '../protocol/set-irqs.js';
import { decodeVersionWithCapabilities, encodeVersionWithCapabilities, negotiateMinor, type CapabilitiesInput } from '../protocol/version.js';
import { decodeWriteMultiRequest, encodeWriteMultiReply, WRITE_MULTI_DEFAULT_MAX_ENTRIES, WRITE_MULTI_ENTRY_SIZE, WRITE_MULTI_MAX_DATA } from '../protocol/write-multi.js';
import type { Message } from '../transport/types.js';
import type { Connection, HandlerResult } from './connection.js';
import type { DeviceContext } from './context.js';
import type { DmaRegion } from './dma-table.js';


const einval = (msg: string): ProtocolError => new ProtocolError(Errno.EINVAL, msg);
const isPromise = (v: unknown): v is Promise<unknown> => typeof (v as { then?: unknown } | null)?.then === 'function';

/** Most fds each command may carry; anything more is refused (and closed). */
function maxFdsFor(command: number): number {
  if (command === Command.DMA_MAP) return 1;
  if (command === Command.DEVICE_SET_IRQS) return Number.MAX_SAFE_INTEGER; // checked against count
  return 0;
}

/**
 * Validates and dispatches one command from the client. Owns msg.fds: every
 * fd ends up kept by the device state or closed, whatever happens.
 */
export function handleCommand(ctx: DeviceContext, conn: Connection, msg: Message): HandlerResult | Promise<HandlerResult> {
  const h = msg.header;
  const fds = msg.fds;
  let fdsTaken = false;
  try {
    if (!isCommand(h.flags) || (h.flags & ~FLAGS_KNOWN) !== 0) throw einval(`bad flags 0x${h.flags.toString(16)}`);
    if (msg.fdsTruncated) throw einval('fds were lost in transit (control data truncated)');
    if (fds.length > maxFdsFor(h.command)) throw einval(`${commandName(h.command)} carries ${fds.length} unexpected fd(s)`);
    if (conn.peerCaps === null) {
      if (h.command !== Command.VERSION) {
        // libvfio-user drops a client that does not start with VERSION; so do we.
        conn.closeAfterReply = true;
        throw einval('first message must be VERSION');
      }
      try {
        return negotiate(ctx, conn, msg);
      } catch (e) {
        // A failed handshake ends the connection, as in libvfio-user.
        conn.closeAfterReply = true;
        throw e;
      }
    }
    fdsTaken = true;
    return dispatch(ctx, conn, msg);
  } finally {
    if (!fdsTaken) conn.transport.releaseFds(fds);
  }
}

function dispatch(ctx: DeviceContext, conn: Connection, msg: Message): HandlerResult | Promise<HandlerResult> {
  const { header: h, payload, fds } = msg;
  // Commands that take fds hand them over to the device state (or close them) themselves.
  if (h.command !== Command.DMA_MAP && h.command !== Command.DEVICE_SET_IRQS) conn.transport.releaseFds(fds);
  const xfer = ctx.options.maxDataXferSize;
  switch (h.command) {
    case Command.VERSION:
      throw einval('VERSION already negotiated');
    case Command.DMA_MAP:
      return dmaMap(ctx, payload, fds);
    case Command.DMA_UNMAP:
      return dmaUnmap(ctx, payload);
    case Command.DEVICE_GET_INFO:
      decodeDeviceInfoRequest(payload);
      return encodeDeviceInfoReply({ argsz: 16, flags: DeviceInfoFlags.RESET | DeviceInfoFlags.PCI, numRegions: NUM_REGIONS, numIrqs: NUM_IRQS });
    case Command.DEVICE_GET_REGION_INFO: {
      const req = decodeRegionInfoRequest(payload, NUM_REGIONS);
      const region = ctx.region(req.index);
      const { payload: out, attachFd } = buildRegionInfoReply(region.wire(), req.argsz);
      return attachFd ? { payload: out, fds: [region.fd] } : out;
    }
    case Command.DEVICE_GET_REGION_IO_FDS:
      return regionIoFds(ctx, payload);
    case Command.DEVICE_GET_IRQ_INFO: {
      const req = decodeIrqInfoRequest(payload, NUM_IRQS);
      return encodeIrqInfoReply({ argsz: 16, flags: ctx.irqs.infoFlags(req.index), index: req.index, count: ctx.irqs.count(req.index) });
    }
    case Command.DEVICE_SET_IRQS: {
      let req;
      try {
        req = decodeSetIrqsRequest(payload);
      } catch (e) {
        // setIrqs never saw the fds: close them here.
        conn.transport.releaseFds(fds);
        throw e;
      }
      ctx.irqs.setIrqs(req, fds);
      return;
    }
    case Command.REGION_READ: {
      const req = decodeRegionReadRequest(payload, { maxCount: xfer });
      const offset = checkAccess(ctx, req.region, req.offset, req.count);
      if (req.count === 0) return encodeRegionReadReply({ ...req, data: new Uint8Array(0) });
      const r = ctx.region(req.region).read(offset, req.count);
      const finish = (data: Uint8Array): HandlerResult => {
        if (data.length !== req.count) throw new ProtocolError(Errno.EIO, `region ${req.region} read returned ${data.length} of ${req.count} bytes`);
        // The device's bytes go out behind the head uncopied.
        return encodeRegionReadReplyParts({ ...req, data });
      };
      return isPromise(r) ? r.then(finish) : finish(r);
    }
    case Command.REGION_WRITE: {
      const req = decodeRegionWriteRequest(payload, { maxCount: xfer });
      const offset = checkAccess(ctx, req.region, req.offset, req.count);
      const reply = encodeRegionWriteReply({ offset: req.offset, region: req.region, count: req.count });
      if (req.count === 0) return reply;
      const r = ctx.region(req.region).write(offset, req.data);
      return isPromise(r) ? r.then(() => reply) : reply;
    }
    case Command.REGION_WRITE_MULTI:
      return writeMulti(ctx, payload);
    case Command.DEVICE_RESET:
      return ctx.reset('device-reset');
    case Command.DEVICE_FEATURE:
      return ctx.migration.feature(decodeDeviceFeatureRequest(payload));
    case Command.MIG_DATA_READ: {
      if (!ctx.migration.supported) throw einval('device has no migration support');
      const req = decodeMigDataReadRequest(payload, { maxSize: xfer });
      return ctx.migration.readData(req.size);
    }
    case Command.MIG_DATA_WRITE: {
      if (!ctx.migration.supported) throw einval('device has no migration support');
      const req = decodeMigDataWriteRequest(payload, { maxSize: xfer });
      return ctx.migration.writeData(req.data);
    }
    case Command.DMA_READ:
    case Command.DMA_WRITE:
      throw einval(`${commandName(h.command)} is a server-to-client command`);
    case Command.DIRTY_PAGES:
      throw einval('DIRTY_PAGES (migration v1) is obsolete');
    default:
      throw new ProtocolError(Errno.ENOSYS, `unknown command ${h.command}`);
  }
}

/** Region index, bounds (overflow-safe, in bigint) and direction. Returns the offset as a number. */
function checkAccess(ctx: DeviceContext, index: number, offset: bigint, count: number): number {
  if (index >= NUM_REGIONS) throw einval(`no region ${index}`);
  const r = ctx.region(index);
  if (offset + BigInt(count) > BigInt(r.size)) throw einval(`access ${offset}+${count} outside region ${index} (size ${r.size})`);
  return Number(offset);
}

function negotiate(ctx: DeviceContext, conn: Connection, msg: Message): HandlerResult {
  const req = decodeVersionWithCapabilities(msg.payload);
  const minor = negotiateMinor(req.major, req.minor);
  const peer = req.capabilities;
  const page = native.pageSize();
  if (ctx.migration.supported && peer.migration && peer.present.has('migration') && peer.migration.pgsize % page !== 0) {
    throw einval(`client migration page size ${peer.migration.pgsize} is not a multiple of ${page}`);
  }
  // Reply only what the client offered (plus what it needs to know: our
  // limits and migration), compactly: QEMU refuses a reply longer than its
  // 198-byte request, and libvfio-user's client crashes on twin_socket.
  const o = ctx.options;
  const caps: CapabilitiesInput = { maxMsgFds: o.maxMsgFds, maxDataXferSize: o.maxDataXferSize };
  if (peer.present.has('pgsizes')) caps.pgsizes = page;
  if (peer.present.has('max_dma_maps')) caps.maxDmaMaps = Math.min(o.maxDmaRegions, peer.maxDmaMaps);
  if (peer.present.has('write_multiple') && peer.writeMultiple && o.writeMultiple) caps.writeMultiple = true;
  if (ctx.migration.supported) {
    caps.migration = { pgsize: page };
    if (peer.migration?.maxBitmapSize !== undefined) caps.migration.maxBitmapSize = Math.min(o.maxDirtyBitmapSize, peer.migration.maxBitmapSize);
  }
  let twinFd = -1;
  if (peer.twinSocket?.supported && o.twinSocket && peer.maxMsgFds > 0) {
    const [ours, theirs] = native.socketpair();
    twinFd = theirs;
    conn.setTwin(ours);
    caps.twinSocket = { supported: true, fdIndex: 0 };
  }
  if (peer.extensions?.[CAP_X_IRQ_MESSAGES] === true) {
    conn.irqMessages = true;
    caps.extensions = { [CAP_X_IRQ_MESSAGES]: true };
  }
  conn.peerCaps = peer;
  conn.negotiatedMinor = minor;
  ctx.log.debug(`negotiated 0.${minor}; client max_data_xfer_size ${peer.maxDataXferSize}, max_msg_fds ${peer.maxMsgFds}`);
  const payload = encodeVersionWithCapabilities(0, minor, caps);
  return twinFd >= 0 ? { payload, fds: [twinFd], ownFds: true } : payload;
}

async function dmaMap(ctx: DeviceContext, payload: Uint8Array, fds: number[]): Promise<HandlerResult> {
  let fd: number | null = fds[0] ?? null;
  try {
    const req = decodeDmaMapRequest(payload);
    if (fd === null && req.flags & (DmaMapFlags.MMAP | DmaMapFlags.FILE_IO)) throw einval('DMA_MAP MMAP/FILE_IO without an fd');
    await ctx.quiesced(async () => {
      const region = ctx.dmaTable.add({
        iova: req.address,
        size: req.size,
        offset: req.offset,
        readable: (req.flags & DmaMapFlags.READ) !== 0,
        writable: (req.flags & DmaMapFlags.WRITE) !== 0,
        fd,
      });
      if (region === null) return; // identical to an existing map: accepted, new fd closed below
      fd = null; // the region owns it now
      try {
        await ctx.description.dma?.onMap?.(region.info());
        ctx.notifyDmaMapped(region);
      } catch (e) {
        ctx.dmaTable.remove(region.iova, region.size);
        region.release();
        throw e;
      }
    });
    return;
  } finally {
    if (fd !== null) native.close(fd);
  }
}

async function dmaUnmap(ctx: DeviceContext, payload: Uint8Array): Promise<HandlerResult> {
  const req = decodeDmaUnmapRequest(payload);
  if (req.flags & DmaUnmapFlags.GET_DIRTY_BITMAP) {
    // Migration v1's dirty bitmap on unmap is not part of the current spec.
    throw einval('DMA_UNMAP GET_DIRTY_BITMAP (migration v1) is not supported');
  }
  await ctx.quiesced(async () => {
    const removed: DmaRegion[] = req.flags & DmaUnmapFlags.ALL ? ctx.dmaTable.removeAll() : [ctx.dmaTable.remove(req.address, req.size)];
    for (const r of removed) {
      try {
        await ctx.description.dma?.onUnmap?.(r.info());
      } finally {
        // Every view, here and in workers, is released or revoked before the reply.
        await ctx.retireRegion(r);
      }
    }
  });
  return encodeDmaUnmapReply({ argsz: req.argsz, flags: req.flags, address: req.address, size: req.size });
}

function regionIoFds(ctx: DeviceContext, payload: Uint8Array): HandlerResult {
  const req = decodeRegionIoFdsRequest(payload);
  if (req.index >= NUM_REGIONS) throw einval(`no region ${req.index}`);
  const region = ctx.region(req.index);
  if (!region.configured) throw einval(`region ${req.index} is not configured`);
  // fds are de-duplicated; entries refer to them by index.
  const fds: number[] = [];
  const entries: IoFdEntry[] = region.ioeventfds.map((e) => {
    let i = fds.indexOf(e.fd);
    if (i < 0) i = fds.push(e.fd) - 1;
    return {
      offset: BigInt(e.offset),
      size: BigInt(e.size),
      fdIndex: i,
      type: IoFdType.IOEVENTFD,
      flags: e.flags | (e.datamatch !== undefined ? KvmIoeventfdFlags.DATAMATCH : 0),
      datamatch: e.datamatch ?? 0n,
    };
  });
  const { payload: out, attachFds } = buildRegionIoFdsReply(req.index, entries, req.argsz);
  return attachFds ? { payload: out, fds } : out;
}

/**
 * Synchronous while the device's write callbacks are: a promise (and with it
 * the connection's deadline timer and queue hold) only once one of them
 * returns a promise. QEMU sends these posted, many in a row.
 */
function writeMulti(ctx: DeviceContext, payload: Uint8Array): HandlerResult | Promise<HandlerResult> {
  const req = decodeWriteMultiRequest(payload);
  // Validate every entry before applying any, so a bad batch changes nothing.
  const offsets = req.entries.map((e) => checkAccess(ctx, e.region, e.offset, e.count));
  const entries = req.entries;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const r = ctx.region(e.region).write(offsets[i]!, e.data.subarray(0, e.count));
    if (isPromise(r)) return finishWriteMulti(ctx, entries, offsets, i, r);
  }
  return encodeWriteMultiReply({ wrCnt: BigInt(entries.length) });
}

async function finishWriteMulti(
  ctx: DeviceContext,
  entries: readonly { region: number; count: number; data: Uint8Array }[],
  offsets: readonly number[],
  at: number,
  pending: Promise<unknown>,
): Promise<HandlerResult> {
  await pending;
  for (let i = at + 1; i < entries.length; i++) {
    const e = entries[i]!;
    const r = ctx.region(e.region).write(offsets[i]!, e.data.subarray(0, e.count));
    if (isPromise(r)) await r;
  }
  return encodeWriteMultiReply({ wrCnt: BigInt(entries.length) });
}

/** Reads a little-endian u32 from `b` at `i`. */
const u32At = (b: Uint8Array, i: number): number => (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0;

/** REGION_READ/REGION_WRITE request and reply heads: 16-byte message header + 16-byte access header. */
const ACCESS_HEAD = 32;

/**
 * The allocation-free path of the two commands that dominate a device's
 * traffic, REGION_READ and REGION_WRITE, for a message lying in the
 * transport's read buffer. It takes only requests it can answer completely
 * and exactly as handleCommand would (well-formed, in bounds, offset below
 * 2^32, the reply fits the connection's reply buffer); for anything else it
 * returns false before changing any state, and the message goes the general
 * way, which produces the error reply. A device callback that returns a
 * promise hands the command to the connection's ordered queue.
 */
export function fastCommand(ctx: DeviceContext, conn: Connection, b: Uint8Array, at: number, size: number): boolean {
  const command = b[at + 2]! | (b[at + 3]! << 8);
  if (command !== Command.REGION_READ && command !== Command.REGION_WRITE && command !== Command.REGION_WRITE_MULTI) return false;
  const flags = u32At(b, at + 8);
  // A plain command, posted or not; anything else (and the handshake) goes the general way.
  if ((flags !== 0 && flags !== FLAG_NO_REPLY) || conn.peerCaps === null) return false;
  if (command === Command.REGION_WRITE_MULTI) return fastWriteMulti(ctx, conn, b, at, size, flags);
  if (size < ACCESS_HEAD) return false;
  if (u32At(b, at + 20) !== 0) return false; // offset >= 2^32: no region is that large
  const offset = u32At(b, at + 16);
  const index = u32At(b, at + 24);
  const count = u32At(b, at + 28);
  if (index >= NUM_REGIONS || count === 0 || count > ctx.options.maxDataXferSize) return false;
  const region = ctx.region(index);
  if (offset + count > region.size) return false;
  const out = conn.replyBuffer;
  if (command === Command.REGION_READ) {
    if (size !== ACCESS_HEAD || !region.readable || ACCESS_HEAD + count > out.length) return false;
    let pending: Promise<Uint8Array> | null;
    try {
      pending = region.readInto(offset, count, out, ACCESS_HEAD);
    } catch (e) {
      conn.failNow(headerAt(b, at), e);
      return true;
    }
    if (pending !== null) {
      const h = headerAt(b, at);
      const req = { offset: BigInt(offset), region: index, count };
      conn.settleLater(
        h,
        pending.then((data) => {
          if (data.length !== count) throw new ProtocolError(Errno.EIO, `region ${index} read returned ${data.length} of ${count} bytes`);
          return encodeRegionReadReplyParts({ ...req, data });
        }),
      );
      return true;
    }
    if (flags === 0) {
      writeReplyHead(out, b, at, ACCESS_HEAD + count);
      conn.sendReply(out, ACCESS_HEAD + count);
    }
    return true;
  }
  if (size !== ACCESS_HEAD + count || !region.writable) return false;
  let r: void | Promise<void>;
  try {
    r = region.writeFrom(offset, b, at + ACCESS_HEAD, count);
  } catch (e) {
    conn.failNow(headerAt(b, at), e);
    return true;
  }
  if (isPromise(r)) {
    const reply = encodeRegionWriteReply({ offset: BigInt(offset), region: index, count });
    conn.settleLater(headerAt(b, at), r.then(() => reply));
    return true;
  }
  if (flags === 0) {
    writeReplyHead(out, b, at, ACCESS_HEAD);
    conn.sendReply(out, ACCESS_HEAD);
  }
  return true;
}

/** REGION_WRITE_MULTI: the message header, u64 wr_cnt, then 24-byte entries. */
const MULTI_HEAD = 24;

/**
 * REGION_WRITE_MULTI in place (QEMU's batches of posted writes): every entry
 * is checked before any is applied, as writeMulti does; a batch it cannot
 * take whole (a bad entry, an empty one, more entries than the decoder's
 * limit) goes the general way, which answers the error.
 */
function fastWriteMulti(ctx: DeviceContext, conn: Connection, b: Uint8Array, at: number, size: number, flags: number): boolean {
  if (size < MULTI_HEAD || u32At(b, at + 20) !== 0) return false;
  const n = u32At(b, at + 16);
  if (n > WRITE_MULTI_DEFAULT_MAX_ENTRIES || size !== MULTI_HEAD + WRITE_MULTI_ENTRY_SIZE * n) return false;
  for (let i = 0, e = at + MULTI_HEAD; i < n; i++, e += WRITE_MULTI_ENTRY_SIZE) {
    const index = u32At(b, e + 8);
    const count = u32At(b, e + 12);
    if (u32At(b, e + 4) !== 0 || index >= NUM_REGIONS || count === 0 || count > WRITE_MULTI_MAX_DATA) return false;
    const region = ctx.region(index);
    if (u32At(b, e) + count > region.size || !region.writable) return false;
  }
  for (let i = 0, e = at + MULTI_HEAD; i < n; i++, e += WRITE_MULTI_ENTRY_SIZE) {
    let r: void | Promise<void>;
    try {
      r = ctx.region(u32At(b, e + 8)).writeFrom(u32At(b, e), b, e + 16, u32At(b, e + 12));
    } catch (err) {
      conn.failNow(headerAt(b, at), err);
      return true;
    }
    if (isPromise(r)) {
      // An async write callback: the rest of the batch continues in order
      // once it settles, holding the connection's queue meanwhile.
      const rest = decodeWriteMultiRequest(b.slice(at + 16, at + size)).entries;
      const offsets = rest.map((x) => Number(x.offset));
      conn.settleLater(headerAt(b, at), finishWriteMulti(ctx, rest, offsets, i, r));
      return true;
    }
  }
  if (flags === 0) {
    const out = conn.replyBuffer;
    writeReplyHead(out, b, at, MULTI_HEAD);
    // u64 wr_cnt: every write completed.
    out[16] = n;
    out[17] = n >>> 8;
    out[18] = n >>> 16;
    out[19] = n >>> 24;
    out[20] = out[21] = out[22] = out[23] = 0;
    conn.sendReply(out, MULTI_HEAD);
  }
  return true;
}

/** The header of the message at `b[at]`, as an object (slow paths only). */
function headerAt(b: Uint8Array, at: number): MessageHeader {
  return { msgId: b[at]! | (b[at + 1]! << 8), command: b[at + 2]! | (b[at + 3]! << 8), msgSize: u32At(b, at + 4), flags: u32At(b, at + 8), error: u32At(b, at + 12) };
}

/**
 * Writes a reply's message header and the echoed 16-byte access header of
 * request `b[at]` into `out`: same id and command, TYPE_REPLY, no error.
 */
function writeReplyHead(out: Uint8Array, b: Uint8Array, at: number, msgSize: number): void {
  out[0] = b[at]!;
  out[1] = b[at + 1]!;
  out[2] = b[at + 2]!;
  out[3] = b[at + 3]!;
  out[4] = msgSize;
  out[5] = msgSize >>> 8;
  out[6] = msgSize >>> 16;
  out[7] = msgSize >>> 24;
  out[8] = TYPE_REPLY;
  out[9] = 0;
  out[10] = 0;
  out[11] = 0;
  out[12] = 0;
  out[13] = 0;
  out[14] = 0;
  out[15] = 0;
  for (let i = 16; i < ACCESS_HEAD; i++) out[i] = b[at + i]!;
}
