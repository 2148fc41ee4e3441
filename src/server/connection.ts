import { Errno } from '../protocol/errno.js';
import { ProtocolError } from '../protocol/errors.js';
import { commandName } from '../protocol/commands.js';
import type { MessageHeader } from '../protocol/header.js';
import type { VersionCapabilities } from '../protocol/version.js';
import { Endpoint, type Payload } from '../transport/endpoint.js';
import { SocketTransport, type FastLaneHandler } from '../transport/socket-transport.js';
import type { Message, Transport } from '../transport/types.js';
import type { Logger } from '../util/logger.js';

/** What a command handler answers: a payload, with fds to attach if any. */
export interface HandlerReply {
  payload?: Payload;
  fds?: number[];
  /** Close `fds` once sent (e.g. our end of a twin socket pair). */
  ownFds?: boolean;
}

export type HandlerResult = HandlerReply | Payload | void;

const isPayload = (r: HandlerResult): r is Payload => r instanceof Uint8Array || Array.isArray(r);

export type CommandHandler = (msg: Message, conn: Connection) => HandlerResult | Promise<HandlerResult>;

/**
 * Handles a command lying in the transport's read buffer without a Message
 * object (see handlers.ts fastCommand); false leaves it to CommandHandler.
 */
export type FastCommandHandler = (buf: Uint8Array, offset: number, size: number, conn: Connection) => boolean;

/** Replies built in place by the fast lane (REGION_READ data included) fit here. */
const REPLY_BUFFER_SIZE = 64 * 1024 + 32;

export interface ConnectionOptions {
  logger: Logger;
  requestTimeoutMs: number;
  callbackTimeoutMs: number;
  maxQueuedCommands: number;
  /** Limits for a twin socket's transport. */
  maxMessageSize: number;
}

const isPromise = <T>(v: unknown): v is Promise<T> => typeof (v as { then?: unknown } | null)?.then === 'function';

/**
 * One client connection: the endpoint (for replies and server-initiated DMA
 * requests) and the ordered command queue. Commands run strictly in arrival
 * order; a handler that returns a promise holds the queue until it settles
 * or its deadline passes (then the client gets ETIMEDOUT, never a reply
 * later than QEMU's 5 s timeout). Replies from the client (to our DMA
 * requests) bypass the queue, so a pending command may wait on them.
 */
export class Connection {
  readonly endpoint: Endpoint;
  /** Second socket for server->client DMA when the client asked for one. */
  twin: Endpoint | null = null;
  /** Capabilities the client sent in VERSION (null until negotiated). */
  peerCaps: VersionCapabilities | null = null;
  negotiatedMinor = 0;
  /** Close the connection once the reply to the current command is out (a failed handshake). */
  closeAfterReply = false;
  /** The client asked for interrupts by message (our extension). */
  irqMessages = false;
  private readonly queue: Message[] = [];
  private busy = false;
  private paused = false;
  /**
   * Our replies are piling up unsent (the client is not reading): no more
   * commands run, and the socket is not read, until the queue drains. Without
   * this a client that never reads makes us buffer replies without bound.
   */
  private outputBlocked = false;
  private closedFlag = false;
  /** Jobs that run in the queue's order once it drains (disconnect cleanup). */
  private readonly tailJobs: (() => Promise<void> | void)[] = [];
  /** Where the fast lane builds its replies; reused for every one. */
  readonly replyBuffer: Uint8Array;

  constructor(
    readonly transport: Transport,
    private readonly handler: (msg: Message, conn: Connection) => HandlerResult | Promise<HandlerResult>,
    private readonly opts: ConnectionOptions,
    private readonly onClosed: (conn: Connection) => void,
    fast?: FastCommandHandler,
  ) {
    this.endpoint = new Endpoint(transport, { requestTimeoutMs: opts.requestTimeoutMs });
    this.replyBuffer = new Uint8Array(fast && transport instanceof SocketTransport ? REPLY_BUFFER_SIZE : 0);
    if (fast && transport instanceof SocketTransport) {
      // Only while nothing is queued or running: commands stay in arrival order.
      const lane: FastLaneHandler = (b, at, size) =>
        !this.busy && !this.outputBlocked && this.queue.length === 0 && !this.closedFlag && fast(b, at, size, this);
      transport.setFastLane(lane);
    }
    transport.setHandlers({ onDrain: () => this.onOutputDrained() });
    this.endpoint.setHandlers({
      onCommand: (m) => this.enqueue(m),
      onFramingError: (e) => {
        // The body was skipped; tell the sender its message was too big.
        opts.logger.warn(`message ${e.header.msgId} (${commandName(e.header.command)}) of ${e.header.msgSize} bytes refused: too large`);
        this.endpoint.replyError(e.header, Errno.E2BIG);
      },
      onStrayReply: (m) => opts.logger.warn(`unexpected reply id ${m.header.msgId} for ${commandName(m.header.command)}`),
      onClose: (err) => {
        if (err) opts.logger.debug(`connection closed: ${err.message}`);
        this.closedFlag = true;
        // No drain will come: let the queue (and the cleanup behind it) run.
        this.outputBlocked = false;
        // The twin socket lives and dies with the main connection.
        if (this.twin && !this.twin.closed) void this.twin.close();
        this.onClosed(this);
      },
    });
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /**
   * Adopts our end of the twin socket: server->client DMA requests and their
   * replies travel there from now on. The client may not send commands on it.
   */
  setTwin(fd: number): void {
    const t = new SocketTransport(fd, { maxMessageSize: this.opts.maxMessageSize, maxFdsPerMessage: 1 });
    const twin = new Endpoint(t, { requestTimeoutMs: this.opts.requestTimeoutMs });
    twin.setHandlers({
      onCommand: (m) => {
        t.releaseFds(m.fds);
        twin.replyError(m.header, Errno.EINVAL);
      },
      onStrayReply: (m) => this.opts.logger.warn(`unexpected reply id ${m.header.msgId} on the twin socket`),
    });
    this.twin = twin;
  }

  /** The endpoint server->client requests go to. */
  get dmaEndpoint(): Endpoint {
    return this.twin ?? this.endpoint;
  }

  /** Nothing running, queued or held back: the next message would run at once. */
  get idle(): boolean {
    return !this.busy && !this.outputBlocked && this.queue.length === 0 && this.tailJobs.length === 0 && !this.closedFlag;
  }

  /** Messages waiting behind the current one. */
  get queued(): number {
    return this.queue.length;
  }

  private enqueue(msg: Message): void {
    if (!this.busy && !this.outputBlocked && this.queue.length === 0) {
      // Fast path: nothing ahead of it, handle it now without queueing.
      this.run(msg);
      return;
    }
    this.queue.push(msg);
    if (!this.paused && this.queue.length >= this.opts.maxQueuedCommands) {
      // Back-pressure on a flooding client: stop reading until we catch up.
      this.paused = true;
      this.transport.pause();
    }
  }

  /** Runs `job` after every command received so far has been handled. */
  runAfterQueue(job: () => Promise<void> | void): void {
    this.tailJobs.push(job);
    if (!this.busy) this.drain();
  }

  /** The client read enough of our replies: carry on. */
  private onOutputDrained(): void {
    if (!this.outputBlocked) return;
    this.outputBlocked = false;
    if (!this.paused) this.transport.resume();
    this.drain();
  }

  /** Tracks what a reply's send() said about the send queue. */
  private noteSent(queuedBelowMark: boolean): void {
    if (queuedBelowMark || this.outputBlocked || this.closedFlag || this.transport.closed) return;
    this.outputBlocked = true;
    this.transport.pause();
  }

  private drain(): void {
    while (!this.busy && !this.outputBlocked) {
      const msg = this.queue.shift();
      if (msg) {
        if (this.paused && this.queue.length < this.opts.maxQueuedCommands / 2) {
          this.paused = false;
          this.transport.resume();
        }
        this.run(msg);
        continue;
      }
      const job = this.tailJobs.shift();
      if (!job) return;
      let r: Promise<void> | void;
      try {
        r = job();
      } catch (e) {
        this.opts.logger.error(`cleanup failed: ${(e as Error).message}`);
        continue;
      }
      if (isPromise(r)) {
        this.busy = true;
        r.catch((e: Error) => this.opts.logger.error(`cleanup failed: ${e.message}`)).finally(() => {
          this.busy = false;
          this.drain();
        });
      }
    }
  }

  private run(msg: Message): void {
    let r: HandlerResult | Promise<HandlerResult>;
    try {
      r = this.handler(msg, this);
    } catch (e) {
      this.fail(msg.header, e);
      return;
    }
    if (!isPromise<HandlerResult>(r)) {
      this.reply(msg.header, r);
      return;
    }
    this.settleLater(msg.header, r);
  }

  /**
   * Sends a reply the fast lane built in `buf[0 .. length)` (reused: sent at
   * once or copied), with the same back-pressure and close-after-reply rules
   * as every other reply.
   */
  sendReply(buf: Uint8Array, length: number): void {
    if (this.closedFlag || this.transport.closed) return;
    this.noteSent((this.transport as SocketTransport).sendReused(buf, length));
    this.maybeClose();
  }

  /** Answers command `h` with the error `e` stands for (the fast lane's failures). */
  failNow(h: MessageHeader, e: unknown): void {
    this.fail(h, e);
  }

  /**
   * Holds the queue until the pending result of command `h` settles (or its
   * deadline passes: ETIMEDOUT), then replies.
   */
  settleLater(h: MessageHeader, r: Promise<HandlerResult>): void {
    const msg = { header: h };
    this.busy = true;
    let timer: NodeJS.Timeout | null = null;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ProtocolError(Errno.ETIMEDOUT, `${commandName(msg.header.command)} took longer than ${this.opts.callbackTimeoutMs} ms`)),
        this.opts.callbackTimeoutMs,
      );
    });
    Promise.race([r, deadline])
      .then(
        (v) => this.reply(msg.header, v),
        (e) => this.fail(msg.header, e),
      )
      .finally(() => {
        if (timer) clearTimeout(timer);
        this.busy = false;
        this.drain();
      });
  }

  private reply(h: MessageHeader, r: HandlerResult): void {
    if (this.closedFlag) {
      if (r && !isPayload(r) && r.ownFds && r.fds) this.transport.releaseFds(r.fds);
      return;
    }
    if (isPayload(r)) this.noteSent(this.endpoint.reply(h, r));
    else if (r) this.noteSent(this.endpoint.reply(h, r.payload, r.fds, r.ownFds));
    else this.noteSent(this.endpoint.reply(h));
    this.maybeClose();
  }

  private maybeClose(): void {
    if (!this.closeAfterReply) return;
    this.closeAfterReply = false;
    void this.close();
  }

  private fail(h: MessageHeader, e: unknown): void {
    const errno = errnoOf(e);
    const level = e instanceof ProtocolError ? 'debug' : 'warn';
    this.opts.logger[level](`${commandName(h.command)} (id ${h.msgId}) failed: ${(e as Error)?.message ?? e}`);
    this.noteSent(this.endpoint.replyError(h, errno));
    this.maybeClose();
  }

  close(): Promise<void> {
    const p = this.endpoint.close();
    if (this.twin) void this.twin.close();
    return p;
  }
}

/** errno for an error thrown while handling a command. */
export function errnoOf(e: unknown): number {
  const errno = (e as { errno?: unknown } | null)?.errno;
  if (typeof errno === 'number' && Number.isInteger(errno) && errno > 0 && errno < 4096) return errno;
  return Errno.EIO;
}
