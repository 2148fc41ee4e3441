// The connection half of a client: the transport and its endpoint(s),
// VERSION negotiation, the request plumbing every command goes through, and
// teardown. VfioUserClient adds the commands.
import { EventEmitter } from 'node:events';
import { tuneAllocator } from '../native/allocator.js';
import { native } from '../native/binding.js';
import { Command, commandName } from '../protocol/commands.js';
import { Errno } from '../protocol/errno.js';
import { RemoteError } from '../protocol/errors.js';
import { CAP_X_IRQ_MESSAGES, CMD_X_VM_INTERRUPT, decodeVmInterrupt } from '../protocol/extensions.js';
import { VERSION_MINOR_MAX, type VersionCapabilities } from '../protocol/version.js';
import { Endpoint, type Payload } from '../transport/endpoint.js';
import { SocketTransport } from '../transport/socket-transport.js';
import { DEFAULT_TRANSPORT_LIMITS, type Message, type Transport } from '../transport/types.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { badReply, ClientError, ClientErrorCode, invalidArg, isRefusal, refusedConnection } from './errors.js';
import { IrqWatcher } from './irqs.js';
import { acceptVersionReply, encodeVersionOffer } from './negotiate.js';
import { ServerRequestHandler } from './server-requests.js';
import type { ClientEvents, ClientOptions, MappedRegion, NegotiatedVersion, ServedStats } from './types.js';

/**
 * The session a VfioUserClient runs on: one connection to a server, its
 * negotiated capabilities, the guest memory, eventfds and region mappings
 * the client holds for it, and their release on close. Not constructed
 * directly: VfioUserClient.connect() and VfioUserClient.over() make one.
 */
export abstract class ClientSession extends EventEmitter<ClientEvents> {
  /** The request/reply endpoint over the transport. @internal */
  readonly endpoint: Endpoint;
  /** The twin socket's endpoint when one was negotiated. @internal */
  twin: Endpoint | null = null;
  /** Capabilities the server replied with. */
  serverCaps!: VersionCapabilities;
  /** What VERSION negotiated. */
  version!: NegotiatedVersion;
  /** Where the client logs. */
  readonly log: Logger;
  /** Counters of the DMA requests the client served for the server. */
  readonly stats: ServedStats;
  protected readonly opts: Required<Omit<ClientOptions, 'logger' | 'extensions' | 'irqMessages'>> & { extensions: Record<string, unknown> | undefined };
  protected readonly regionMaps = new Set<MappedRegion>();
  protected readonly served: ServerRequestHandler;
  protected readonly irqs: IrqWatcher;
  protected closing: Promise<void> | null = null;
  protected closedFlag = false;

  protected constructor(transport: Transport, opts: ClientOptions) {
    super();
    this.log = opts.logger ?? silentLogger;
    tuneAllocator();
    this.opts = {
      maxDataXferSize: opts.maxDataXferSize ?? 1048576,
      maxMsgFds: opts.maxMsgFds ?? 16,
      maxDmaMaps: opts.maxDmaMaps ?? 65535,
      maxBitmapSize: opts.maxBitmapSize ?? 256 * 1048576,
      twinSocket: opts.twinSocket ?? false,
      writeMultiple: opts.writeMultiple ?? true,
      minor: opts.minor ?? VERSION_MINOR_MAX,
      requestTimeoutMs: opts.requestTimeoutMs ?? 5000,
      resetTimeoutMs: opts.resetTimeoutMs ?? 30000,
      extensions: opts.irqMessages ? { ...opts.extensions, [CAP_X_IRQ_MESSAGES]: true } : opts.extensions,
    };
    const x = this.opts.maxDataXferSize;
    if (!Number.isSafeInteger(x) || x < 1 || x > 64 * 1048576) throw invalidArg('maxDataXferSize must be 1..64 MiB');
    this.served = new ServerRequestHandler(this.log, x);
    this.stats = this.served.stats;
    this.irqs = new IrqWatcher((e) => this.emit('irq', e));
    this.endpoint = new Endpoint(transport, { requestTimeoutMs: this.opts.requestTimeoutMs });
    this.endpoint.setHandlers({
      onCommand: (m) => this.served.handle(this.endpoint, m, false),
      onStrayReply: (m) => this.log.warn(`unexpected reply id ${m.header.msgId} for ${commandName(m.header.command)}`),
      onFramingError: (e) => {
        this.log.warn(`server message of ${e.header.msgSize} bytes too large, skipped`);
        this.endpoint.replyError(e.header, Errno.E2BIG);
      },
      onClose: (err) => this.onTransportClosed(err),
    });
    if (opts.irqMessages) {
      this.served.commands.set(CMD_X_VM_INTERRUPT, (m) => {
        const v = decodeVmInterrupt(m.payload);
        this.irqs.signal(v.index, v.vector, 1, 'message');
      });
    }
  }

  /** Interrupt vectors this client gave eventfds for, as [index, vector] pairs. */
  irqVectors(): [number, number][] {
    return this.irqs.watched();
  }

  /** True when the server agreed to deliver interrupts by message too. */
  get irqMessages(): boolean {
    return this.serverCaps.extensions?.[CAP_X_IRQ_MESSAGES] === true;
  }

  /** Transport limits fitting a max transfer size (a transfer plus headers). */
  static transportLimits(maxDataXferSize = 1048576) {
    return { maxMessageSize: Math.max(DEFAULT_TRANSPORT_LIMITS.maxMessageSize, maxDataXferSize + 4096) };
  }

  /** True once the connection is gone. */
  get closed(): boolean {
    return this.closedFlag;
  }

  /** Largest REGION_READ/WRITE or MIG_DATA transfer we send in one message. */
  get xferChunk(): number {
    const ours = this.endpoint.transport.limits.maxMessageSize - 64;
    return Math.max(1, Math.min(this.serverCaps.maxDataXferSize, ours));
  }

  // ---- VERSION -----------------------------------------------------------------

  protected async negotiate(): Promise<void> {
    let reply: Message;
    try {
      reply = await this.endpoint.request(Command.VERSION, encodeVersionOffer(this.opts));
    } catch (e) {
      // EBUSY / EACCES: the server turned this connection away (another client, a uid it does not allow).
      throw e instanceof RemoteError && isRefusal(e.errno) ? refusedConnection(e) : e;
    }
    const fds = reply.fds;
    let twinFd = -1;
    try {
      const v = acceptVersionReply(reply.payload, fds, this.opts);
      twinFd = v.twinFd;
      this.serverCaps = v.caps;
      this.version = v.version;
      this.log.debug(`negotiated ${v.version.major}.${v.version.minor}: ${v.version.json ?? '(no capabilities)'}`);
    } finally {
      this.endpoint.transport.releaseFds(fds.filter((f) => f !== twinFd));
    }
    if (twinFd >= 0) {
      let t: SocketTransport;
      try {
        t = new SocketTransport(twinFd, ClientSession.transportLimits(this.opts.maxDataXferSize));
      } catch (e) {
        native.close(twinFd);
        throw e;
      }
      const twin = new Endpoint(t, { requestTimeoutMs: this.opts.requestTimeoutMs });
      twin.setHandlers({
        onCommand: (m) => this.served.handle(twin, m, true),
        onStrayReply: (m) => this.log.warn(`unexpected reply id ${m.header.msgId} on the twin socket`),
        onFramingError: (e) => twin.replyError(e.header, Errno.E2BIG),
      });
      this.twin = twin;
      this.log.debug('twin socket in use for server→client DMA');
    }
  }

  // ---- plumbing ----------------------------------------------------------------------

  protected assertOpen(): void {
    if (this.closedFlag || this.closing) throw new ClientError(ClientErrorCode.CLOSED, 'client is closed');
  }

  /** Sends a request; the reply's fds are closed unless keepFds. Error replies reject with RemoteError. */
  async request(command: number, payload?: Payload, opts: { fds?: readonly number[]; timeoutMs?: number; keepFds?: boolean } = {}): Promise<Message> {
    this.assertOpen();
    const reqOpts: { fds?: readonly number[]; timeoutMs?: number } = {};
    if (opts.fds) reqOpts.fds = opts.fds;
    if (opts.timeoutMs !== undefined) reqOpts.timeoutMs = opts.timeoutMs;
    const m = await this.endpoint.request(command, payload, reqOpts);
    if (!opts.keepFds && m.fds.length > 0) {
      this.log.warn(`${commandName(command)} reply carried ${m.fds.length} unexpected fd(s); closed`);
      this.endpoint.transport.releaseFds(m.fds);
      m.fds = [];
    }
    return m;
  }

  protected decode<T>(command: number, f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw badReply(command, e);
    }
  }

  // ---- teardown ----------------------------------------------------------------------------

  protected onTransportClosed(err?: Error): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    // The server is gone: its eventfd copies are useless, waiters fail now.
    // Guest memory and region mappings stay readable until close().
    this.irqs.close();
    if (this.twin && !this.twin.closed) void this.twin.close();
    this.emit('close', err);
  }

  /** Frees everything this process holds for the session (eventfds, guest memory, region maps). */
  protected releaseLocal(): void {
    this.irqs.close();
    for (const r of [...this.regionMaps]) r.unmap();
    for (const m of this.served.memories) m.free();
    this.served.memories.clear();
  }

  /**
   * Graceful close: stops our eventfds, then closes the socket(s) with
   * shutdown + drain + close (the server sees a clean EOF), then frees guest
   * memory and region mappings.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      const twin = this.twin;
      if (twin) await twin.close().catch(() => {});
      await this.endpoint.close().catch(() => {});
      this.onTransportClosed();
      this.releaseLocal();
    })();
    return this.closing;
  }
}
