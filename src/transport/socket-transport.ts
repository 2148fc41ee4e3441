import { native, type PollerHandle } from '../native/binding.js';
import { BaseTransport } from './base-transport.js';
import type { TransportLimits } from './types.js';

const READABLE = 1;
const WRITABLE = 2;
/** Poller event: its blocking receive delivered bytes (native/poller.cc). */
const RECEIVED = 0x100;
/** One read buffer per transport; bodies are copied out by the framer. */
const READ_BUFFER_SIZE = 256 * 1024;
/** SO_SNDBUF/SO_RCVBUF asked for (the kernel caps it at net.core.wmem_max). */
const SOCKET_BUFFER_SIZE = 4 * 1048576;
/** Bodies with at least this much still to come are received in place. */
const DIRECT_READ_MIN = 64 * 1024;
/** Reads per readiness callback before yielding to the event loop. */
const MAX_READS_PER_TICK = 64;

/** No fds: shared, never mutated (the framer copies fds out of its argument). */
const NO_FDS: number[] = [];

/**
 * Handles one whole message lying in the transport's read buffer at
 * `buf[offset .. offset + size)`, synchronously, without a Message object.
 * Returns false to leave the message (and everything after it in this read)
 * to the general path. The bytes are only valid during the call.
 */
export type FastLaneHandler = (buf: Uint8Array, offset: number, size: number) => boolean;

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
  private fast: FastLaneHandler | null = null;
  /** Blocking receive on (dedicated-thread mode), and when the owner allows it. */
  private blockGate: (() => boolean) | null = null;

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
    this.poller = new native.Poller(fd, (status, events, received) => this.onPoll(status, events, received));
    this.updatePoll();
  }

  /**
   * Installs the fast lane: whole fd-less messages that arrive while nothing
   * is buffered ahead of them go to `handler` in place, before any framing
   * object is made for them. Messages it declines, and all others, take the
   * general path in order.
   */
  setFastLane(handler: FastLaneHandler | null): void {
    this.fast = handler;
  }

  /**
   * Dedicated-thread mode: while `gate()` says the owner is idle (nothing
   * running, nothing queued) and nothing is buffered here, this thread waits
   * for the next message in a blocking recvmsg instead of in the event loop
   * (see native/poller.cc): two syscalls per request. The loop still runs
   * whenever it has work (timers, other fds, worker messages, signals).
   * `null` turns it off.
   */
  setBlockingReceive(gate: (() => boolean) | null): void {
    if (this.isClosed) return;
    this.blockGate = gate;
    if (gate) this.poller.setBlockingReceive(this.rbuf, this.fdsOut);
    else this.poller.setBlockingReceive(null);
  }

  /** Whether the poller may block for the next message now. */
  private mayBlock(): boolean {
    return (
      this.blockGate !== null &&
      !this.isClosed &&
      !this.closing &&
      !this.eof &&
      !this.paused &&
      !this.pullMode &&
      this.queue.length === 0 &&
      this.inbox.length === 0 &&
      // Large bodies are received in place by the non-blocking path.
      this.framer.bodyLeft < DIRECT_READ_MIN &&
      this.blockGate()
    );
  }

  /**
   * Sends `buf[0 .. length)`, a buffer the caller reuses: written to the
   * socket at once when nothing is queued (the common case: no copy, no
   * allocation); whatever the socket does not take is copied into the queue.
   * Same return value as send().
   */
  sendReused(buf: Uint8Array, length: number): boolean {
    this.assertOpen();
    let sent = 0;
    if (this.queue.length === 0) {
      let n: number;
      try {
        n = native.sendmsg(this.fd, buf, 0, length, null);
      } catch (e) {
        this.destroy(e as Error);
        return false;
      }
      if (n === length) return true;
      if (n > 0) sent = n;
    }
    return this.send(buf.slice(sent, length));
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

  private onPoll(status: number, events: number, received: number): boolean {
    if (this.isClosed) return false;
    if (status < 0) {
      this.destroy(events & RECEIVED ? Object.assign(new Error(`recvmsg: errno ${-status}`), { errno: -status, syscall: 'recvmsg' }) : new Error(`poll error ${status}`));
      return false;
    }
    if (events & RECEIVED) {
      // The poller's blocking receive put `received` bytes in rbuf.
      this.afterReceive(received, this.rbuf, false);
      return this.mayBlock();
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
    if (this.isClosed) return false;
    this.updatePoll();
    return this.mayBlock();
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
    return this.afterReceive(n, target, direct);
  }

  /** Frames what a recvmsg of `n` bytes into `target` (fds in fdsOut) brought. False at EOF or EAGAIN. */
  private afterReceive(n: number, target: Uint8Array, direct: boolean): boolean {
    const nfds = this.fdsOut[0]!;
    if (n > 0 && nfds === 0 && !direct && this.fast !== null && !this.pullMode && (this.fdsOut[1]! & 1) === 0) {
      this.lastReadShort = n < target.length;
      this.ingestFast(n);
      return true;
    }
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

  /**
   * The fast lane over `rbuf[0 .. n)` (no fds came with it): whole messages
   * go to the handler in place while nothing is buffered ahead of them and
   * delivery is on; the rest of the read, from the first message it
   * declines, is framed as usual.
   */
  private ingestFast(n: number): void {
    const b = this.rbuf;
    const max = this.limits.maxMessageSize;
    let pos = 0;
    if (this.framer.idle && this.inbox.length === 0) {
      while (n - pos >= 16 && !this.paused && !this.isClosed && !this.closing) {
        const size = (b[pos + 4]! | (b[pos + 5]! << 8) | (b[pos + 6]! << 16) | (b[pos + 7]! << 24)) >>> 0;
        if (size < 16 || size > n - pos || size > max) break;
        if (!this.fast!(b, pos, size)) break;
        pos += size;
      }
    }
    if (pos < n && !this.isClosed) this.ingest(b.subarray(pos, n), NO_FDS, false);
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
