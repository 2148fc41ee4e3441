// A byte-level vfio-user client for the conformance suite: it sends exactly
// the bytes a case builds (malformed ones included) and hands back whatever
// the server sends, in order, with the fds that came with it. Nothing here
// retries, repairs or validates: judging is the cases' job.
import { native } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { FLAG_ERROR, FLAG_NO_REPLY, HEADER_SIZE, TYPE_COMMAND, TYPE_REPLY, encodeMessage, isReply } from '../../src/protocol/header.js';
import { decodeVersionWithCapabilities, encodeVersionWithCapabilities, type CapabilitiesInput, type VersionCapabilities } from '../../src/protocol/version.js';
import { Errno } from '../../src/protocol/errno.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import type { Message } from '../../src/transport/types.js';

/** Why a wait ended without the message a case asked for. */
export class CheckWaitError extends Error {
  constructor(
    readonly code: 'ERR_CHECK_TIMEOUT' | 'ERR_CHECK_CLOSED',
    message: string,
  ) {
    super(message);
  }
}

/** Options of a raw connection. */
export interface RawClientOptions {
  /** How long a reply may take (ms). */
  timeoutMs: number;
}

/** The capabilities the suite offers by default (QEMU's limits). */
export const CHECK_CAPS: CapabilitiesInput = { maxMsgFds: 16, maxDataXferSize: 1048576 };

/** A server-to-client command the client answered by itself while waiting. */
export interface AnsweredCommand {
  command: number;
  msgId: number;
}

/**
 * One connection to the server under test. Messages are queued as they
 * arrive; `next()` and `reply()` take them in stream order. Commands from the
 * server (DMA_READ/WRITE) are answered with ENODEV, as QEMU answers an access
 * to memory it has not mapped, so a device that DMAs does not stall a case.
 */
export class RawClient {
  private readonly t: SocketTransport;
  private readonly inbox: Message[] = [];
  private waiter: (() => void) | null = null;
  private nextId = 0x100;
  /** The server closed the connection (or it failed). */
  closed = false;
  closeError: Error | undefined;
  /** Framing broke: the server's stream cannot be read any further. */
  framingBroken = false;
  /** Server-to-client commands answered with ENODEV. */
  readonly answered: AnsweredCommand[] = [];
  /** Capabilities from the server's VERSION reply, once negotiated. */
  serverCaps: VersionCapabilities | null = null;

  private constructor(
    fd: number,
    readonly opts: RawClientOptions,
  ) {
    // Large limits: the suite must see oversize replies to judge them.
    this.t = new SocketTransport(fd, { maxMessageSize: 64 * 1048576 + HEADER_SIZE, maxDrainSize: 64 * 1048576 + HEADER_SIZE, maxFdsPerMessage: 253 });
    this.t.setHandlers({
      onMessage: (m) => this.onMessage(m),
      onClose: (err) => {
        this.closed = true;
        this.closeError = err;
        if (err && /framing|msg_size/i.test(err.message)) this.framingBroken = true;
        this.wake();
      },
    });
  }

  /** Connects (throws the addon's ENOENT/ECONNREFUSED... when nobody listens). */
  static connect(path: string, opts: RawClientOptions): RawClient {
    return new RawClient(native.connect(path), opts);
  }

  private onMessage(m: Message): void {
    if (!isReply(m.header.flags) && (m.header.command === Command.DMA_READ || m.header.command === Command.DMA_WRITE)) {
      this.t.releaseFds(m.fds);
      this.answered.push({ command: m.header.command, msgId: m.header.msgId });
      if (!(m.header.flags & FLAG_NO_REPLY) && !this.t.closed) {
        this.t.send(encodeMessage({ msgId: m.header.msgId, command: m.header.command, flags: TYPE_REPLY | FLAG_ERROR, error: Errno.ENODEV }));
      }
      return;
    }
    this.inbox.push(m);
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** A fresh message id (ids only need to be ours; the server echoes them). */
  id(): number {
    this.nextId = (this.nextId + 1) & 0xffff;
    return this.nextId;
  }

  /** Sends bytes as they are, with fds on their first byte (the caller keeps its fds). */
  sendRaw(bytes: Uint8Array, fds?: readonly number[]): void {
    this.t.send(bytes, fds);
  }

  /** Sends a command; returns its msg_id. */
  send(command: number, payload?: Uint8Array, o: { fds?: readonly number[]; flags?: number; msgId?: number } = {}): number {
    const msgId = o.msgId ?? this.id();
    this.sendRaw(encodeMessage({ msgId, command, flags: o.flags ?? TYPE_COMMAND, error: 0 }, payload), o.fds);
    return msgId;
  }

  /** The next message from the server, or null after `timeoutMs` (or once closed with nothing queued). */
  async next(timeoutMs = this.opts.timeoutMs): Promise<Message | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.inbox.shift();
      if (m) return m;
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.waiter = null;
          resolve();
        }, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /**
   * The reply to `msgId`: the next message must be it. Throws CheckWaitError
   * on timeout or close, and a plain Error naming what came instead.
   */
  async reply(msgId: number, command: number, timeoutMs = this.opts.timeoutMs): Promise<Message> {
    const m = await this.next(timeoutMs);
    if (!m) {
      if (this.closed) throw new CheckWaitError('ERR_CHECK_CLOSED', `connection closed before the reply to ${cmdLabel(command)}${this.closeError ? ` (${this.closeError.message})` : ''}`);
      throw new CheckWaitError('ERR_CHECK_TIMEOUT', `no reply to ${cmdLabel(command)} within ${timeoutMs} ms`);
    }
    if (!isReply(m.header.flags) || m.header.msgId !== msgId || m.header.command !== command) {
      this.t.releaseFds(m.fds);
      throw new Error(
        `expected the reply to ${cmdLabel(command)} id ${msgId}, got ${isReply(m.header.flags) ? 'a reply' : 'a command'} ` +
          `${cmdLabel(m.header.command)} id ${m.header.msgId} flags 0x${m.header.flags.toString(16)}`,
      );
    }
    return m;
  }

  /** Sends a command and waits for its reply (error replies are returned, not thrown). */
  async call(command: number, payload?: Uint8Array, o: { fds?: readonly number[]; flags?: number; timeoutMs?: number } = {}): Promise<Message> {
    const id = this.send(command, payload, o);
    return this.reply(id, command, o.timeoutMs);
  }

  /** VERSION 0.2 with the suite's capabilities; throws unless it succeeds. */
  async negotiate(caps: CapabilitiesInput = CHECK_CAPS): Promise<VersionCapabilities> {
    const r = await this.call(Command.VERSION, encodeVersionWithCapabilities(0, 2, caps));
    this.release(r);
    if (r.header.flags & FLAG_ERROR) throw new Error(`VERSION refused: errno ${r.header.error}`);
    this.serverCaps = decodeVersionWithCapabilities(r.payload).capabilities;
    return this.serverCaps;
  }

  /** True when nothing arrives within `ms` (the connection may stay open). */
  async silentFor(ms: number): Promise<boolean> {
    const m = await this.next(ms);
    if (m) {
      this.inbox.unshift(m);
      return false;
    }
    return true;
  }

  /** Waits until the server closes the connection; false after `ms`. */
  async waitClosed(ms = this.opts.timeoutMs): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) {
      const m = await this.next(Math.max(1, deadline - Date.now()));
      if (m) this.release(m);
    }
    return this.closed;
  }

  /** Closes fds that came with a message the case does not keep. */
  release(m: Message): void {
    if (m.fds.length > 0) this.t.releaseFds(m.fds);
    m.fds = [];
  }

  /** Graceful close (shutdown, drain, close). */
  async close(): Promise<void> {
    for (const m of this.inbox.splice(0)) this.release(m);
    await this.t.close({ timeoutMs: 500 });
  }

  /** Abrupt close: the socket goes away with whatever is queued either way. */
  abort(): void {
    for (const m of this.inbox.splice(0)) this.release(m);
    try {
      native.shutdown(this.t.fd, 2);
    } catch {
      // already gone
    }
    void this.t.close({ timeoutMs: 0 });
  }
}

/** `NAME(n)` for a command number. */
export function cmdLabel(n: number): string {
  const e = Object.entries(Command).find(([, v]) => v === n);
  return e ? e[0] : `command ${n}`;
}

/** The header's errno when `m` is an error reply, else 0. */
export const errnoOf = (m: Message): number => (m.header.flags & FLAG_ERROR ? m.header.error || -1 : 0);
export const isError = (m: Message): boolean => (m.header.flags & FLAG_ERROR) !== 0;
