import { Command } from '../protocol/commands.js';
import { Errno, errnoName } from '../protocol/errno.js';
import { ProtocolError, VfioUserError } from '../protocol/errors.js';
import { decodeDmaReadReply, decodeDmaWriteReply, encodeDmaDataParts, encodeDmaReadRequest } from '../protocol/dma-rw.js';
import type { Endpoint, Payload } from '../transport/endpoint.js';
import type { DmaRegion, DmaRegionInfo, DmaTable } from './dma-table.js';

/** A DMA access the library refused. `errno` says why. */
export class DmaError extends VfioUserError {
  /** Why, as an errno (EPERM: Bus Master off or migration stopped the device; ENOENT: not mapped; EACCES: read-only; EFAULT: a view across regions or over memory mapped without an fd). */
  readonly errno: number;
  constructor(errno: number, message: string) {
    super('ERR_VFIO_USER_DMA', `${message} (${errnoName(errno)})`);
    this.errno = errno;
  }
}

/**
 * Zero-copy window on guest memory. Release it when done, read views too:
 * DMA_UNMAP of the region waits for every view (up to the server's
 * `viewRevokeTimeoutMs`, then revokes those still held).
 */
export interface DmaView {
  /** Reads as length 0 once the client unmapped the region. */
  readonly bytes: Uint8Array;
  /** The view was asked for with `write: true`. */
  readonly writable: boolean;
  /**
   * Ends the hold (idempotent). A writable view stops being reported dirty
   * (its pages were marked); an unmap waiting for this view goes on.
   */
  release(): void;
}

/** An IOVA (guest-physical address for QEMU) as a bigint or a safe integer. */
export type IovaLike = bigint | number;

/** Options of DmaController.read and write. */
export interface DmaAccessOptions {
  /** Use DMA_READ/DMA_WRITE messages even where the region is fd-backed. */
  viaMessages?: boolean;
}

/** Where message-based DMA goes (the current client's endpoint), or null without a client. */
export interface DmaChannel {
  endpoint: Endpoint;
  /** The client's max_data_xfer_size: DMA messages are chunked to it. */
  maxXfer: number;
}

export interface DmaControllerDeps {
  table: DmaTable;
  channel(): DmaChannel | null;
  /** Bus Master Enable, unless the device opted out. */
  allowed(): boolean;
}

const toBig = (v: IovaLike): bigint => (typeof v === 'bigint' ? v : BigInt(v));

/**
 * The device's access to guest memory. fd-backed regions are reached through
 * zero-copy views of the mmapped memory; regions mapped without an fd go
 * through DMA_READ/DMA_WRITE messages chunked at the client's transfer size.
 */
export class DmaController {
  constructor(private readonly deps: DmaControllerDeps) {}

  /** The regions mapped now. */
  regions(): DmaRegionInfo[] {
    return this.deps.table.list().map((r) => r.info());
  }

  private check(write: boolean): void {
    if (!this.deps.allowed()) throw new DmaError(Errno.EPERM, 'DMA refused: Bus Master Enable is off');
    void write;
  }

  private segments(iova: IovaLike, length: number, write: boolean) {
    if (!Number.isSafeInteger(length) || length < 0) throw new DmaError(Errno.EINVAL, `bad DMA length ${length}`);
    try {
      const segs = this.deps.table.segments(toBig(iova), length);
      for (const s of segs) {
        if (write && !s.region.writable) throw new DmaError(Errno.EACCES, `IOVA 0x${s.region.iova.toString(16)} is mapped read-only`);
        if (!write && !s.region.readable) throw new DmaError(Errno.EACCES, `IOVA 0x${s.region.iova.toString(16)} is not readable`);
      }
      return segs;
    } catch (e) {
      if (e instanceof ProtocolError) throw new DmaError(e.errno, e.message);
      throw e;
    }
  }

  /**
   * A zero-copy view of [iova, iova+length). It must lie in one fd-backed
   * region (and, in regions over 4 GiB, in one 1 GiB window of it). Every
   * view, read or write, must be released: DMA_UNMAP of its region waits
   * for that (at most `viewRevokeTimeoutMs`, then the view is revoked). A
   * writable view counts as dirty from now until release().
   */
  view(iova: IovaLike, length: number, opts: { write?: boolean } = {}): DmaView {
    const write = opts.write ?? false;
    this.check(write);
    const segs = this.segments(iova, length, write);
    if (segs.length !== 1) throw new DmaError(Errno.EFAULT, 'DMA view spans more than one region');
    const s = segs[0]!;
    const region = s.region;
    if (!region.mapping) throw new DmaError(Errno.EFAULT, 'region was mapped without an fd (use read/write)');
    const held = region.released ? null : region.mapping.hold(s.offset, s.length);
    if (!held) throw new DmaError(Errno.EFAULT, `DMA view at 0x${toBig(iova).toString(16)}+${length} crosses a 1 GiB window of a large region (use read/write or smaller views)`);
    const mapping = region.mapping;
    const hold = held.hold;
    if (!write) {
      return { bytes: held.bytes, writable: false, release: () => mapping.release(hold) };
    }
    const dirtyHold = { offset: s.offset, length: s.length };
    region.heldWritable.add(dirtyHold);
    region.markDirty(s.offset, s.length);
    let released = false;
    return {
      bytes: held.bytes,
      writable: true,
      release: () => {
        if (released) return;
        released = true;
        region.markDirty(dirtyHold.offset, dirtyHold.length);
        region.heldWritable.delete(dirtyHold);
        mapping.release(hold);
      },
    };
  }

  /** True when every byte of the range is fd-backed (synchronous access possible). */
  isDirect(iova: IovaLike, length: number): boolean {
    try {
      return this.deps.table.segments(toBig(iova), length).every((s) => s.region.mapped);
    } catch {
      return false;
    }
  }

  /** Copies guest memory out; fd-backed only. */
  readSync(iova: IovaLike, length: number): Uint8Array {
    this.check(false);
    const out = new Uint8Array(length);
    for (const s of this.segments(iova, length, false)) {
      if (!s.region.mapped) throw new DmaError(Errno.EFAULT, 'region was mapped without an fd (use read())');
      s.region.copyOut(s.offset, out.subarray(s.at, s.at + s.length));
    }
    return out;
  }

  /** Copies into guest memory, marking exactly the written pages dirty; fd-backed only. */
  writeSync(iova: IovaLike, data: Uint8Array): void {
    this.check(true);
    const segs = this.segments(iova, data.length, true);
    for (const s of segs) if (!s.region.mapped) throw new DmaError(Errno.EFAULT, 'region was mapped without an fd (use write())');
    for (const s of segs) {
      s.region.copyIn(s.offset, data.subarray(s.at, s.at + s.length));
      s.region.markDirty(s.offset, s.length);
    }
  }

  /**
   * Reads guest memory, through the mapping where there is one and DMA_READ
   * messages elsewhere (or everywhere with `viaMessages`, as libvfio-user's
   * vfu_sgl_read without DIRECT_ACCESS does).
   */
  async read(iova: IovaLike, length: number, opts: DmaAccessOptions = {}): Promise<Uint8Array> {
    this.check(false);
    const segs = this.segments(iova, length, false);
    const one = segs.length === 1 ? segs[0]! : null;
    if (one && (!one.region.mapped || opts.viaMessages) && length <= this.channel().maxXfer) {
      // One DMA_READ carries it all: hand out the reply's bytes, uncopied.
      return this.readOneMessage(one.region, one.offset, length);
    }
    const out = new Uint8Array(length);
    for (const s of segs) {
      const dst = out.subarray(s.at, s.at + s.length);
      if (s.region.mapped && !opts.viaMessages) s.region.copyOut(s.offset, dst);
      else await this.messageRead(s.region, s.offset, dst);
    }
    return out;
  }

  /** Writes guest memory (mapping or DMA_WRITE messages). Message writes are dirty-tracked by the client, as the spec says. */
  async write(iova: IovaLike, data: Uint8Array, opts: DmaAccessOptions = {}): Promise<void> {
    this.check(true);
    for (const s of this.segments(iova, data.length, true)) {
      const src = data.subarray(s.at, s.at + s.length);
      if (s.region.mapped && !opts.viaMessages) {
        s.region.copyIn(s.offset, src);
        s.region.markDirty(s.offset, s.length);
      } else {
        await this.messageWrite(s.region, s.offset, src);
      }
    }
  }

  /** Marks a range dirty by hand (e.g. after writing through a view kept for long). */
  markDirty(iova: IovaLike, length: number): void {
    for (const s of this.segments(iova, length, true)) s.region.markDirty(s.offset, s.length);
  }

  private channel(): DmaChannel {
    const c = this.deps.channel();
    if (!c) throw new DmaError(Errno.ENOTCONN, 'no client connected');
    return c;
  }

  private async messageRead(region: DmaRegion, offset: number, dst: Uint8Array): Promise<void> {
    const { maxXfer } = this.channel();
    for (let done = 0; done < dst.length; ) {
      const n = Math.min(maxXfer, dst.length - done);
      dst.set(await this.readOneMessage(region, offset + done, n), done);
      done += n;
    }
  }

  /** One DMA_READ of `n` bytes (at most max_data_xfer_size): a view of the reply's data. */
  private async readOneMessage(region: DmaRegion, offset: number, n: number): Promise<Uint8Array> {
    const { endpoint } = this.channel();
    const address = region.iova + BigInt(offset);
    const reply = await this.request(endpoint, Command.DMA_READ, encodeDmaReadRequest({ address, count: BigInt(n) }));
    const r = decodeDmaReadReply(reply);
    if (r.address !== address || r.count !== BigInt(n) || r.data.length !== n) {
      throw new DmaError(Errno.EPROTO, `DMA_READ reply for 0x${address.toString(16)} does not match the request`);
    }
    return r.data;
  }

  private async messageWrite(region: DmaRegion, offset: number, src: Uint8Array): Promise<void> {
    const { endpoint, maxXfer } = this.channel();
    for (let done = 0; done < src.length; ) {
      const n = Math.min(maxXfer, src.length - done);
      const address = region.iova + BigInt(offset + done);
      const reply = await this.request(endpoint, Command.DMA_WRITE, encodeDmaDataParts({ address, count: BigInt(n), data: src.subarray(done, done + n) }));
      const echo = decodeDmaWriteReply(reply);
      if (echo && (echo.address !== address || echo.count !== BigInt(n))) {
        throw new DmaError(Errno.EPROTO, `DMA_WRITE reply for 0x${address.toString(16)} does not match the request`);
      }
      done += n;
    }
  }

  private async request(endpoint: Endpoint, command: number, payload: Payload): Promise<Uint8Array> {
    try {
      const msg = await endpoint.request(command, payload);
      endpoint.transport.releaseFds(msg.fds);
      return msg.payload;
    } catch (e) {
      const errno = (e as { errno?: number }).errno;
      throw new DmaError(typeof errno === 'number' ? errno : Errno.EIO, `${command === Command.DMA_READ ? 'DMA_READ' : 'DMA_WRITE'} failed: ${(e as Error).message}`);
    }
  }
}
