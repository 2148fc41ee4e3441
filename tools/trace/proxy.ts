// The tracing proxy: listens where a client expects a server, connects to
// the real server for every client it accepts, and forwards each message in
// both directions unchanged, fds included, while reporting it. A twin socket
// the server hands out is swapped for one end of a socketpair of the
// proxy's, so server->client DMA on it is traced as well.
//
// Interrupts signalled through eventfds (the fds of SET_IRQS) go from the
// server straight to the client's eventfd: no proxy sees them. Only the
// SET_IRQS that hands them over is traced (and x_vm_interrupt messages).
import { unlinkSync } from 'node:fs';
import { native, type PollerHandle } from '../../src/native/binding.js';
import { Command } from '../../src/protocol/commands.js';
import { FLAG_ERROR, HEADER_SIZE, isReply, wantsReply, writeHeader } from '../../src/protocol/header.js';
import { decodeVersionWithCapabilities } from '../../src/protocol/version.js';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import type { Message, Transport } from '../../src/transport/types.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { traceEvent, type TraceDirection, type TraceEvent } from './decode.js';
import { SummaryBuilder } from './summary.js';

/** Options of a TraceProxy. */
export interface TraceProxyOptions {
  /** Where clients connect (created mode 0600; must not exist). */
  listen: string;
  /** The real server's socket. */
  connect: string;
  /** Every forwarded message, in the order the proxy forwarded them. */
  onEvent?: (e: TraceEvent) => void;
  /** A session (one client) ended. */
  onSessionEnd?: (session: number) => void;
  logger?: Logger;
  /** Largest message forwarded; a larger one ends the session (default 64 MiB + 16, what servers drain). */
  maxMessageSize?: number;
}

/** Payloads up to this size are copied behind their header (one send); larger ones follow it. */
const COPY_LIMIT = 64 * 1024;

/** The message bytes exactly as received: header as it was, then the payload. */
function sendMessage(to: Transport, m: Message): boolean {
  const small = m.payload.length < COPY_LIMIT;
  const head = new Uint8Array(HEADER_SIZE + (small ? m.payload.length : 0));
  writeHeader(head, 0, m.header);
  if (small) head.set(m.payload, HEADER_SIZE);
  let ok = to.send(head, m.fds, true);
  if (!small && !to.closed) ok = to.send(m.payload) && ok;
  return ok;
}

/** One accepted client and its connection to the server. */
class Session {
  private readonly pending = new Map<string, bigint[]>();
  private readonly transports: Transport[] = [];
  private ended = false;

  constructor(
    private readonly proxy: TraceProxy,
    readonly id: number,
    clientFd: number,
    serverFd: number,
  ) {
    const limits = proxy.limits;
    const client = new SocketTransport(clientFd, limits);
    const server = new SocketTransport(serverFd, limits);
    this.pipe(client, server, 'c>s', 'main');
    this.pipe(server, client, 's>c', 'main');
  }

  private pipe(from: Transport, to: Transport, dir: TraceDirection, socket: 'main' | 'twin'): void {
    this.transports.push(from);
    from.setHandlers({
      onMessage: (m) => this.forward(from, to, dir, socket, m),
      onClose: (err) => {
        if (err) this.proxy.log.warn(`session ${this.id}: ${socket} ${dir === 'c>s' ? 'client' : 'server'} side: ${err.message}`);
        this.end();
      },
    });
    // Back-pressure: a peer that reads slowly slows the other side down.
    to.setHandlers({ onDrain: () => from.resume() });
  }

  private forward(from: Transport, to: Transport, dir: TraceDirection, socket: 'main' | 'twin', m: Message): void {
    const now = process.hrtime.bigint();
    if (dir === 's>c' && socket === 'main' && m.header.command === Command.VERSION && isReply(m.header.flags) && !(m.header.flags & FLAG_ERROR)) {
      this.interposeTwin(m);
    }
    const e = traceEvent(m.header, m.payload, m.fds.length, { t: this.proxy.elapsed(now), session: this.id, socket, dir });
    if (m.fdsTruncated) e.payload.fdsLost = true;
    // Replies are matched to commands of the other direction by (command, id), first in first out.
    if (isReply(m.header.flags)) {
      const key = `${socket}:${dir === 'c>s' ? 's>c' : 'c>s'}:${m.header.command}:${m.header.msgId}`;
      const q = this.pending.get(key);
      const t0 = q?.shift();
      if (q && q.length === 0) this.pending.delete(key);
      if (t0 !== undefined) e.latencyMs = Number(now - t0) / 1e6;
    } else if (wantsReply(m.header.flags)) {
      const key = `${socket}:${dir}:${m.header.command}:${m.header.msgId}`;
      const q = this.pending.get(key);
      if (q) q.push(now);
      else this.pending.set(key, [now]);
    }
    this.proxy.report(e);
    if (to.closed) {
      from.releaseFds(m.fds);
      return;
    }
    if (!sendMessage(to, m)) from.pause();
  }

  /**
   * A VERSION reply carrying a twin socket: the client gets one end of a
   * socketpair of ours instead, and the proxy pipes it to the server's end.
   */
  private interposeTwin(m: Message): void {
    let fdIndex: number | undefined;
    try {
      const caps = decodeVersionWithCapabilities(m.payload).capabilities;
      if (caps.twinSocket?.supported) fdIndex = caps.twinSocket.fdIndex;
    } catch {
      return; // not ours to judge: forwarded as it is
    }
    if (fdIndex === undefined || fdIndex >= m.fds.length) return;
    const serverEnd = m.fds[fdIndex]!;
    const [ours, theirs] = native.socketpair();
    m.fds[fdIndex] = theirs;
    const limits = this.proxy.limits;
    const twinServer = new SocketTransport(serverEnd, limits);
    const twinClient = new SocketTransport(ours, limits);
    this.pipe(twinServer, twinClient, 's>c', 'twin');
    this.pipe(twinClient, twinServer, 'c>s', 'twin');
    this.proxy.log.info(`session ${this.id}: twin socket interposed`);
  }

  /** Either side went away: the other is closed gracefully (flushed, shut down, drained). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    void Promise.all(this.transports.map((t) => t.close({ timeoutMs: 5000 }))).then(() => this.proxy.sessionEnded(this));
  }
}

/** A transparent, tracing vfio-user proxy. */
export class TraceProxy {
  readonly log: Logger;
  readonly summary = new SummaryBuilder();
  readonly limits: { maxMessageSize: number; maxDrainSize: number; maxFdsPerMessage: number };
  private readonly t0 = process.hrtime.bigint();
  private listenFd = -1;
  private poller: PollerHandle | null = null;
  private readonly sessions = new Set<Session>();
  private nextSession = 1;
  private idleWaiters: (() => void)[] = [];

  constructor(readonly opts: TraceProxyOptions) {
    this.log = opts.logger ?? silentLogger;
    const max = opts.maxMessageSize ?? 64 * 1048576 + HEADER_SIZE;
    // Drain limit = message limit: nothing is ever skipped, only forwarded or fatal.
    this.limits = { maxMessageSize: max, maxDrainSize: max, maxFdsPerMessage: 253 };
  }

  /** Seconds since the proxy was created. */
  elapsed(now: bigint = process.hrtime.bigint()): number {
    return Number(now - this.t0) / 1e9;
  }

  /** Starts listening. */
  listen(): void {
    this.listenFd = native.listen(this.opts.listen, 0o600, 16);
    this.poller = new native.Poller(this.listenFd, () => this.acceptAll());
    this.poller.start(native.READABLE);
  }

  private acceptAll(): void {
    for (;;) {
      const fd = native.accept(this.listenFd);
      if (fd < 0) return;
      let serverFd: number;
      try {
        serverFd = native.connect(this.opts.connect);
      } catch (e) {
        this.log.error(`cannot connect to ${this.opts.connect}: ${(e as Error).message}; client dropped`);
        native.close(fd);
        continue;
      }
      const s = new Session(this, this.nextSession++, fd, serverFd);
      this.summary.sessions++;
      this.sessions.add(s);
      this.log.info(`session ${s.id}: client connected`);
    }
  }

  /** Called by a session for every message. */
  report(e: TraceEvent): void {
    this.summary.add(e);
    this.opts.onEvent?.(e);
  }

  /** Called by a session once both of its sides are closed. */
  sessionEnded(s: Session): void {
    this.sessions.delete(s);
    this.log.info(`session ${s.id}: ended`);
    this.opts.onSessionEnd?.(s.id);
    if (this.sessions.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Sessions in progress. */
  get activeSessions(): number {
    return this.sessions.size;
  }

  /** Resolves when no session is in progress. */
  idle(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops accepting, ends every session, removes the socket file. */
  async close(): Promise<void> {
    if (this.poller) {
      this.poller.close();
      this.poller = null;
    }
    if (this.listenFd >= 0) {
      native.close(this.listenFd);
      this.listenFd = -1;
      try {
        unlinkSync(this.opts.listen);
      } catch {
        // already gone
      }
    }
    for (const s of this.sessions) s.end();
    await this.idle();
  }
}
