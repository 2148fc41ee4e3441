// The client's side of server→client traffic: it plays the VM, so it serves
// DMA_READ/DMA_WRITE from the guest memory it created (memory DMA_MAPped
// without an fd is reached this way only) and dispatches any other command a
// server sends to the handler registered for it.
import { Command, commandName } from '../protocol/commands.js';
import { decodeDmaReadRequest, decodeDmaWriteRequest, encodeDmaDataParts, encodeDmaWriteReply } from '../protocol/dma-rw.js';
import { Errno } from '../protocol/errno.js';
import { ProtocolError } from '../protocol/errors.js';
import type { PayloadParts } from '../protocol/wire.js';
import type { Endpoint } from '../transport/endpoint.js';
import type { Message } from '../transport/types.js';
import type { Logger } from '../util/logger.js';
import type { GuestMemory } from './guest-memory.js';
import type { ServedStats, ServerCommandHandler } from './types.js';

/** Serves the requests a server sends to its client. */
export class ServerRequestHandler {
  /** Guest memories the client created; the DMA requests reach these. */
  readonly memories = new Set<GuestMemory>();
  /** Handlers of server→client commands other than DMA_READ/DMA_WRITE. */
  readonly commands = new Map<number, ServerCommandHandler>();
  readonly stats: ServedStats = { dmaReads: 0, dmaWrites: 0, dmaBytesRead: 0, dmaBytesWritten: 0, twinRequests: 0, errors: 0 };

  constructor(
    private readonly log: Logger,
    /** Largest DMA_READ/WRITE count accepted (what the client advertised). */
    private readonly maxDataXferSize: number,
  ) {}

  handle(ep: Endpoint, msg: Message, onTwin: boolean): void {
    const h = msg.header;
    if (onTwin) this.stats.twinRequests++;
    const fail = (errno: number, why: string) => {
      this.stats.errors++;
      this.log.debug(`${commandName(h.command)} id ${h.msgId} from server refused: ${why}`);
      ep.replyError(h, errno);
    };
    if (h.command === Command.DMA_READ || h.command === Command.DMA_WRITE) {
      if (msg.fds.length > 0) {
        ep.transport.releaseFds(msg.fds);
        fail(Errno.EINVAL, 'DMA request carries fds');
        return;
      }
      try {
        const reply = h.command === Command.DMA_READ ? this.serveDmaRead(msg.payload) : this.serveDmaWrite(msg.payload);
        ep.reply(h, reply);
      } catch (e) {
        fail(e instanceof ProtocolError ? e.errno : Errno.EINVAL, (e as Error).message);
      }
      return;
    }
    const handler = this.commands.get(h.command);
    if (!handler) {
      ep.transport.releaseFds(msg.fds);
      fail(Errno.ENOSYS, 'unknown command');
      return;
    }
    const done = (payload: Uint8Array | void) => {
      if (!ep.closed) ep.reply(h, payload ?? undefined);
    };
    const failed = (e: unknown) => {
      const errno = (e as { errno?: unknown })?.errno;
      fail(typeof errno === 'number' && errno > 0 && errno < 4096 ? errno : Errno.EINVAL, String((e as Error)?.message ?? e));
    };
    try {
      const r = handler(msg);
      if (r && typeof (r as Promise<unknown>).then === 'function') (r as Promise<Uint8Array | void>).then(done, failed);
      else done(r as Uint8Array | void);
    } catch (e) {
      failed(e);
    }
  }

  /** Copies between guest memory and `buf` for [address, address+len), crossing adjacent memories. */
  private guestAccess(address: bigint, len: number, write: boolean, buf: Uint8Array): void {
    // Validate the whole range first: a refused access changes nothing.
    const parts: { mem: GuestMemory; off: number; at: number; n: number }[] = [];
    let cur = address;
    let at = 0;
    while (at < len) {
      let found: GuestMemory | undefined;
      for (const m of this.memories) if (m.mapped && m.contains(cur, 1n)) found = m;
      if (!found) throw new ProtocolError(Errno.ENOENT, `IOVA 0x${cur.toString(16)} is not mapped`);
      if (write && found.readOnly) throw new ProtocolError(Errno.EPERM, `IOVA 0x${cur.toString(16)} is mapped read-only`);
      const off = Number(cur - found.iova);
      const n = Math.min(len - at, found.size - off);
      parts.push({ mem: found, off, at, n });
      at += n;
      cur += BigInt(n);
    }
    if (len === 0) {
      let ok = false;
      for (const m of this.memories) if (m.mapped && m.contains(address, 0n)) ok = true;
      if (!ok) throw new ProtocolError(Errno.ENOENT, `IOVA 0x${address.toString(16)} is not mapped`);
    }
    for (const p of parts) {
      if (write) {
        p.mem.bytes.set(buf.subarray(p.at, p.at + p.n), p.off);
        p.mem.markClientDirty(p.off, p.n);
      } else {
        buf.set(p.mem.bytes.subarray(p.off, p.off + p.n), p.at);
      }
    }
  }

  private serveDmaRead(payload: Uint8Array): PayloadParts {
    const req = decodeDmaReadRequest(payload, { maxCount: this.maxDataXferSize });
    const n = Number(req.count);
    const data = new Uint8Array(n);
    this.guestAccess(req.address, n, false, data);
    this.stats.dmaReads++;
    this.stats.dmaBytesRead += n;
    return encodeDmaDataParts({ address: req.address, count: req.count, data });
  }

  private serveDmaWrite(payload: Uint8Array): Uint8Array {
    const req = decodeDmaWriteRequest(payload, { maxCount: this.maxDataXferSize });
    this.guestAccess(req.address, req.data.length, true, req.data);
    this.stats.dmaWrites++;
    this.stats.dmaBytesWritten += req.data.length;
    return encodeDmaWriteReply({ address: req.address, count: req.count });
  }
}
