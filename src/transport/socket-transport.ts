import { native, type PollerHandle } from '../native/binding.js';
import { BaseTransport } from './base-transport.js';
import type { TransportLimits } from './types.js';

const READABLE = 1;
const WRITABLE = 2;
/** One read buffer per transport; bodies are copied out by the framer. */
const READ_BUFFER_SIZE = 256 * 1024;
/** SO_SNDBUF/SO_RCVBUF asked for (the kernel caps it at net.core.wmem_max). */
const SOCKET_BUFFER_SIZE = 4 * 1048576;
/** Bodies with at least this much still to come are received in place. */
const DIRECT_READ_MIN = 64 * 1024;
/** Reads per readiness callback before yielding to the event loop. */
const MAX_READS_PER_TICK = 64;

interface Outgoing {
  data: Uint8Array;
  offset: number;
  fds: readonly number[] | null;
  ownFds: boolean;
}

/**
 * A vfio-user connection over a non-blocking UNIX stream socket fd, driven by
 * a libuv poll handle. Large messages go out in pieces as the socket accepts
 * them; fds ride with the first piece.
 */
export class SocketTransport extends BaseTransport {
  readonly fd: number;
  private readonly poller: PollerHandle;
  private readonly rbuf = new Uint8Array(READ_BUFFER_SIZE);
  private readonly fdsOut: Int32Array;
  private readonly queue: Outgoing[] = [];
  private queuedBytes = 0;
  private wantDrain = false;
  private pollEvents = 0;
  private closing: Promise<void> | null = null;
  private flushWaiter: (() => void) | null = null;
  /** The last recvmsg returned less than the buffer holds. */
  private lastReadShort = false;

  constructor(fd: number, limits?: Partial<TransportLimits>) {
    super(limits, (f) => native.close(f));
    this.fd = fd;
    this.fdsOut = new Int32Array(this.limits.maxFdsPerMessage + 2);
    // A whole 1 MiB transfer fits in the socket at once: one sendmsg and one
    // wake-up instead of five (the default buffer takes about 200 KiB).
    try {
      native.setBufferSizes(fd, SOCKET_BUFFER_SIZE, SOCKET_BUFFER_SIZE);
    } catch {
      // not a socket we may tune (or a test double): defaults are fine
    }
    this.poller = new native.Poller(fd, (status, events) => this.onPoll(status, events));
    this.updatePoll();
  }

  send(data: Uint8Array, fds?: readonly number[], ownFds = false): boolean {
    this.assertOpen();
    const item: Outgoing = { data, offset: 0, fds: fds && fds.length > 0 ? fds : null, ownFds };
    if (this.queue.length === 0) {
      this.writeItem(item);
      if (this.isClosed) return false;
      if (item.offset === data.length) return true;
    }
    this.queue.push(item);
    this.queuedBytes += data.length - item.offset;
    this.updatePoll();
    if (this.queuedBytes > this.limits.sendHighWaterMark) {
      this.wantDrain = true;
      return false;
    }
    return true;
  }

  /** Writes as much of one item as the socket takes. */
  private writeItem(item: Outgoing): void {
    while (item.offset < item.data.length) {
      let n: number;
      try {
        n = native.sendmsg(this.fd, item.data, item.offset, item.data.length - item.offset, item.offset === 0 ? (item.fds as number[] | null) : null);
      } catch (e) {
        // Not sent (EPIPE...): fds we own die with the message, also when it
        // never made it into the queue (destroy() only sees queued ones).
        if (item.offset === 0 && item.fds && item.ownFds) {
          const fds = item.fds;
          item.fds = null;
          this.releaseFds(fds);
        }
        this.destroy(e as Error);
        return;
      }
      if (n < 0) return;
      if (item.offset === 0 && item.fds && item.ownFds) this.releaseFds(item.fds);
      item.offset += n;
    }
  }

  private flushQueue(): void {
    while (this.queue.length > 0 && !this.isClosed) {
      const item = this.queue[0]!;
      const before = item.offset;
      this.writeItem(item);
      this.queuedBytes -= item.offset - before;
      if (item.offset < item.data.length) break;
      this.queue.shift();
    }
    if (this.queue.length === 0 && this.flushWaiter) {
      const w = this.flushWaiter;
      this.flushWaiter = null;
      w();
    }
    if (this.wantDrain && this.queuedBytes <= this.limits.sendHighWaterMark / 2) {
      this.wantDrain = false;
      this.handlers.onDrain?.();
    }
  }

  private onPoll(status: number, events: number): void {
    if (this.isClosed) return;
    if (status < 0) {
      this.destroy(new Error(`poll error ${status}`));
      return;
    }
    if (events & WRITABLE) this.flushQueue();
    if (events & READABLE && !this.paused && !this.pullMode) {
      for (let i = 0; i < MAX_READS_PER_TICK && !this.paused && !this.isClosed; i++) {
        // A read that did not fill the buffer almost always emptied the
        // socket: skip the recvmsg that would only say EAGAIN (one syscall
        // per request). The poll is level-triggered, so bytes that arrived
        // meanwhile make it fire again.
        if (!this.readSome() || this.lastReadShort) break;
      }
    }
    if (!this.isClosed) this.updatePoll();
  }

  protected readSome(): boolean {
    if (this.isClosed || this.closing || this.eof) return false;
    // A large body still to come is received straight into its message buffer.
    const window = this.framer.bodyWindow();
    const direct = window !== null && window.length >= DIRECT_READ_MIN;
    const target = direct ? window : this.rbuf;
    let n: number;
    try {
      n = native.recvmsg(this.fd, target, 0, target.length, this.fdsOut);
    } catch (e) {
      this.destroy(e as Error);
      return false;
    }
    const nfds = this.fdsOut[0]!;
    const fds: number[] = [];
    for (let i = 0; i < nfds; i++) fds.push(this.fdsOut[2 + i]!);
    if (n === 0) {
      this.releaseFds(fds);
      this.peerEnded();
      return false;
    }
    if (n < 0) return false;
    this.lastReadShort = n < target.length;
    this.ingest(target.subarray(0, n), fds, (this.fdsOut[1]! & 1) !== 0, direct);
    return true;
  }

  protected onPauseChange(): void {
    if (!this.isClosed) this.updatePoll();
  }

  private updatePoll(): void {
    let ev = 0;
    if (!this.paused && !this.pullMode && !this.closing && !this.eof) ev |= READABLE;
    if (this.queue.length > 0) ev |= WRITABLE;
    if (ev === this.pollEvents) return;
    this.pollEvents = ev;
    if (ev === 0) this.poller.stop();
    else this.poller.start(ev);
  }

  override readMessage() {
    const wasPull = this.pullMode;
    const msg = super.readMessage();
    if (!wasPull && !this.isClosed) this.updatePoll();
    return msg;
  }

  close(opts?: { timeoutMs?: number }): Promise<void> {
    if (this.closing) return this.closing;
    if (this.isClosed) return Promise.resolve();
    const timeoutMs = opts?.timeoutMs ?? 1000;
    this.closing = (async () => {
      this.updatePoll();
      if (this.queue.length > 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, timeoutMs);
          this.flushWaiter = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
      this.shutdownAndDrain();
      this.destroy();
    })();
    return this.closing;
  }

  /**
   * shutdown(SHUT_RDWR) stops new input (the peer's writes now fail), then
   * whatever is already queued to us is read and thrown away so that the
   * close() that follows does not reset the connection.
   */
  private shutdownAndDrain(): void {
    try {
      native.shutdown(this.fd, 2);
    } catch {
      // Peer already gone: nothing to drain.
    }
    for (let i = 0; i < 4096; i++) {
      let n: number;
      try {
        n = native.recvmsg(this.fd, this.rbuf, 0, this.rbuf.length, this.fdsOut);
      } catch {
        break;
      }
      const nfds = this.fdsOut[0]!;
      for (let j = 0; j < nfds; j++) this.releaseFds([this.fdsOut[2 + j]!]);
      if (n <= 0) break;
    }
  }

  protected destroy(err?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.poller.close();
    for (const item of this.queue.splice(0)) if (item.ownFds && item.offset === 0 && item.fds) this.releaseFds(item.fds);
    this.queuedBytes = 0;
    this.discardPending();
    try {
      native.close(this.fd);
    } catch {
      // fd already invalid: nothing left to release.
    }
    if (this.flushWaiter) {
      const w = this.flushWaiter;
      this.flushWaiter = null;
      w();
    }
    this.notifyClose(err);
  }

  unref(): void {
    this.poller.unref();
  }

  ref(): void {
    this.poller.ref();
  }
}
