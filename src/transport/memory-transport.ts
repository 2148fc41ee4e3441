import { BaseTransport } from './base-transport.js';
import type { TransportLimits } from './types.js';

export interface MemoryTransportOptions {
  limits?: Partial<TransportLimits>;
  /**
   * Duplicates an fd "sent" to the other side, as the kernel does with
   * SCM_RIGHTS, so both ends own their copy. Tests pass the native dup; a
   * fuzzer with fake fd numbers can pass the identity.
   */
  dupFd: (fd: number) => number;
  closeFd: (fd: number) => void;
  /**
   * Splits each sent message into pieces before the peer frames it (tests
   * exercise partial reads this way). fds go with the first piece. Default:
   * whole messages.
   */
  split?: (length: number) => number[];
}

/**
 * One end of an in-process transport pair. Bytes go through the same framer
 * as on a socket, delivered asynchronously (setImmediate) like socket reads.
 */
export class MemoryTransport extends BaseTransport {
  peer: MemoryTransport | null = null;
  private readonly pending: { chunk: Uint8Array; fds: number[]; eof?: boolean }[] = [];
  private scheduled = false;
  private refed = true;
  private readonly opts: MemoryTransportOptions;

  constructor(opts: MemoryTransportOptions) {
    super(opts.limits, opts.closeFd);
    this.opts = opts;
  }

  send(data: Uint8Array, fds?: readonly number[], ownFds = false): boolean {
    this.assertOpen();
    const peer = this.peer;
    const copies = (fds ?? []).map((fd) => this.opts.dupFd(fd));
    if (ownFds && fds) this.releaseFds(fds);
    if (!peer || peer.isClosed) {
      this.releaseFds(copies);
      return false;
    }
    const pieces = this.opts.split ? this.opts.split(data.length) : [data.length];
    let off = 0;
    let first = true;
    for (const len of pieces) {
      if (len <= 0) continue;
      peer.enqueue(data.slice(off, off + len), first ? copies : []);
      first = false;
      off += len;
    }
    if (off < data.length) peer.enqueue(data.slice(off), first ? copies : []);
    return true;
  }

  /**
   * Feeds raw bytes to this end as if they arrived from the peer. Used by
   * fuzzers to send anything at all, including broken framing.
   */
  injectRaw(chunk: Uint8Array, fds: number[] = []): void {
    if (this.isClosed) {
      this.releaseFds(fds);
      return;
    }
    this.enqueue(chunk, fds);
  }

  private enqueue(chunk: Uint8Array, fds: number[]): void {
    this.pending.push({ chunk, fds });
    this.schedule();
  }

  /** The peer closed: deliver what it sent, then end. */
  private enqueueEof(): void {
    this.pending.push({ chunk: new Uint8Array(0), fds: [], eof: true });
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.pullMode || this.paused) return;
    this.scheduled = true;
    const t = setImmediate(() => {
      this.scheduled = false;
      while (!this.isClosed && !this.paused && !this.pullMode && this.readSome()) {
        // keep delivering what is pending
      }
    });
    if (!this.refed) t.unref();
  }

  protected readSome(): boolean {
    if (this.isClosed) return false;
    const item = this.pending.shift();
    if (!item) return false;
    if (item.eof) {
      this.peerEnded();
      return false;
    }
    this.ingest(item.chunk, item.fds, false);
    return true;
  }

  protected onPauseChange(): void {
    if (!this.paused && this.pending.length > 0) this.schedule();
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.destroy();
  }

  protected destroy(err?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const p of this.pending.splice(0)) this.releaseFds(p.fds);
    this.discardPending();
    const peer = this.peer;
    if (peer && !peer.isClosed) peer.enqueueEof();
    this.notifyClose(err);
  }

  unref(): void {
    this.refed = false;
  }

  ref(): void {
    this.refed = true;
  }
}

/** Two connected in-memory transports. */
export function createMemoryPair(opts: MemoryTransportOptions): [MemoryTransport, MemoryTransport] {
  const a = new MemoryTransport(opts);
  const b = new MemoryTransport(opts);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
