import { Framer, type FrameEvent } from './framer.js';
import { FramingFatalError, TransportClosedError } from './errors.js';
import {
  DEFAULT_TRANSPORT_LIMITS,
  type Message,
  type Transport,
  type TransportHandlers,
  type TransportLimits,
} from './types.js';

/**
 * What socket and in-memory transports share: framing, the inbox, push/pull
 * delivery, pause/resume and the once-only close notification. Subclasses
 * provide the byte movement.
 */
export abstract class BaseTransport implements Transport {
  readonly limits: Readonly<TransportLimits>;
  protected readonly framer: Framer;
  protected handlers: TransportHandlers = {};
  /** Events framed but not yet delivered (pull mode, or paused). */
  protected readonly inbox: FrameEvent[] = [];
  protected paused = false;
  /** Pull mode: readMessage() was used; never deliver through onMessage. */
  protected pullMode = false;
  private closeNotified = false;
  private delivering = false;
  protected isClosed = false;
  /** The peer finished sending; close once what it sent has been delivered. */
  protected eof = false;

  constructor(limits: Partial<TransportLimits> | undefined, protected readonly closeFd: (fd: number) => void) {
    this.limits = Object.freeze({ ...DEFAULT_TRANSPORT_LIMITS, ...limits });
    this.framer = new Framer(this.limits, (fds) => this.releaseFds(fds));
  }

  get closed(): boolean {
    return this.isClosed;
  }

  setHandlers(h: TransportHandlers): void {
    this.handlers = { ...this.handlers, ...h };
  }

  abstract send(data: Uint8Array, fds?: readonly number[], ownFds?: boolean): boolean;
  abstract close(opts?: { timeoutMs?: number }): Promise<void>;
  abstract unref(): void;
  abstract ref(): void;
  /** Reads what is available without blocking; returns false at EAGAIN/EOF. */
  protected abstract readSome(): boolean;
  protected abstract onPauseChange(): void;

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.onPauseChange();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.onPauseChange();
    this.flushInbox();
  }

  enablePullMode(): void {
    this.pullMode = true;
    this.onPauseChange();
  }

  readMessage(): Message | null {
    this.pullMode = true;
    for (;;) {
      const ev = this.inbox.shift();
      if (ev) {
        if (ev.type === 'message') return ev.msg;
        this.handlers.onFramingError?.({ kind: 'oversize', header: ev.header });
        continue;
      }
      if (this.eof && !this.isClosed) this.destroy();
      if (this.isClosed || !this.readSome()) return null;
    }
  }

  /** Frames a chunk and delivers or stores what it completed. `inPlace`: the bytes were received into framer.bodyWindow(). */
  protected ingest(chunk: Uint8Array, fds: number[], truncated: boolean, inPlace = false): void {
    let events: FrameEvent[];
    try {
      events = inPlace ? this.framer.bodyFilledInPlace(chunk.length, fds, truncated) : this.framer.push(chunk, fds, truncated);
    } catch (e) {
      if (e instanceof FramingFatalError) {
        this.destroy(e);
        return;
      }
      throw e;
    }
    for (const ev of events) this.inbox.push(ev);
    this.flushInbox();
  }

  protected flushInbox(): void {
    if (this.pullMode || this.delivering) return;
    this.delivering = true;
    try {
      while (!this.paused && this.inbox.length > 0) {
        const ev = this.inbox.shift()!;
        if (ev.type === 'message') {
          if (this.handlers.onMessage) this.handlers.onMessage(ev.msg);
          else this.releaseFds(ev.msg.fds);
        } else {
          this.handlers.onFramingError?.({ kind: 'oversize', header: ev.header });
        }
      }
    } finally {
      this.delivering = false;
    }
    if (this.eof && this.inbox.length === 0 && !this.isClosed) this.destroy();
  }

  /**
   * The peer closed its end. Messages it sent before that are still delivered
   * (a posted write followed by a disconnect must still reach the device);
   * the transport closes once they are.
   */
  protected peerEnded(): void {
    this.eof = true;
    if (this.pullMode) return;
    this.flushInbox();
  }

  releaseFds(fds: readonly number[]): void {
    for (const fd of fds) {
      try {
        this.closeFd(fd);
      } catch {
        // Already closed by someone else: nothing more to release.
      }
    }
  }

  /** Drops undelivered messages (closing their fds) and the framer's partial state. */
  protected discardPending(): void {
    for (const ev of this.inbox.splice(0)) if (ev.type === 'message') this.releaseFds(ev.msg.fds);
    this.framer.reset();
  }

  /** Tears down at once (peer gone or fatal error) and notifies once. */
  protected abstract destroy(err?: Error): void;

  protected notifyClose(err?: Error): void {
    if (this.closeNotified) return;
    this.closeNotified = true;
    this.handlers.onClose?.(err);
  }

  protected assertOpen(): void {
    if (this.isClosed) throw new TransportClosedError();
  }
}
