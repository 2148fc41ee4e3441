import type { Logger } from '../util/logger.js';

/**
 * Limits and knobs of a device server. Every number a client can push on has
 * a safe default here.
 */
export interface ServerOptions {
  /** Where the device logs (silent by default). */
  logger?: Logger;
  /** Largest message accepted, header included. Default 1 MiB + 4 KiB (a 1 MiB transfer plus headers). */
  maxMessageSize?: number;
  /** Most fds accepted in one message; also advertised as max_msg_fds (QEMU requires <= 16). Default 16. */
  maxMsgFds?: number;
  /** Largest REGION_READ/WRITE, DMA and migration transfer we accept; advertised as max_data_xfer_size. Default 1 MiB. */
  maxDataXferSize?: number;
  /** Most DMA regions a client may map. Default 65535 (QEMU's own max_dma_maps). */
  maxDmaRegions?: number;
  /** Largest dirty bitmap one REPORT may ask for, in bytes. Default 256 MiB (QEMU's value). */
  maxDirtyBitmapSize?: number;
  /**
   * Deadline for any device callback (access, reset, quiesce, migration).
   * QEMU kills a connection for good after a reply later than its 5 s
   * x-msg-timeout, so the default is 4 s: the client gets ETIMEDOUT instead.
   */
  callbackTimeoutMs?: number;
  /**
   * How long DMA_UNMAP (and a disconnect) waits for the device, and every
   * worker, to release its views of a region before revoking them: a view
   * still held then reads as empty and its pages become inaccessible, so an
   * access in flight fails (EFAULT) instead of reaching other memory.
   * Default: half of callbackTimeoutMs, so the unmap is still answered in
   * time; must be below callbackTimeoutMs.
   */
  viewRevokeTimeoutMs?: number;
  /** Timeout of server-initiated requests (DMA_READ/WRITE). Default 4000 ms. */
  requestTimeoutMs?: number;
  /** Socket file mode. Default 0o600. */
  socketMode?: number;
  /** Accept only clients whose uid is listed (SO_PEERCRED). Default: anyone who can open the socket. */
  allowedUids?: readonly number[];
  /**
   * Refuse DMA and MSI/MSI-X while the guest has Bus Master Enable off, as
   * hardware does. Default true; libvfio-user's sample client never sets BME,
   * so devices that must serve it opt out.
   */
  requireBusMaster?: boolean;
  /** Advertise REGION_WRITE_MULTI (QEMU then batches posted writes when we fall behind). Default true. */
  writeMultiple?: boolean;
  /** Accept a twin socket for server->client DMA when the client offers one. Default true. */
  twinSocket?: boolean;
  /** Commands queued while one is pending before the socket stops being read. Default 4096. */
  maxQueuedCommands?: number;
  /**
   * Refused connections (another client attached: EBUSY; uid not allowed:
   * EACCES) held open at once to answer their first request with an error
   * reply that says so, each for at most a second; beyond this many a refused
   * connection is closed unanswered. Default 4.
   */
  maxRefusedConnections?: number;
  /**
   * Dedicated-thread mode, libvfio-user's blocking `vfu_run_ctx` model: the
   * thread that runs the context (the main thread, or the worker_thread the
   * device was created in) waits for the client's next message in a blocking
   * recvmsg rather than in the event loop, so a request costs two syscalls
   * (receive, reply) instead of three. The event loop still runs whenever it
   * has work: timers, other sockets, worker messages and signals interrupt
   * the wait (the addon uses SIGURG for that). Best when this thread serves
   * the device and little else. Default false.
   */
  dedicatedThread?: boolean;
}

/** ServerOptions with every default filled in (DeviceContext.options). */
export type ResolvedServerOptions = Required<Omit<ServerOptions, 'allowedUids' | 'logger'>> & {
  /** The uids allowed to connect; null = anyone who can open the socket. */
  allowedUids: readonly number[] | null;
  /** Where the device logs. */
  logger: Logger;
};

export function resolveOptions(o: ServerOptions, logger: Logger): ResolvedServerOptions {
  const r: ResolvedServerOptions = {
    logger: o.logger ?? logger,
    maxMessageSize: o.maxMessageSize ?? 1048576 + 4096,
    maxMsgFds: o.maxMsgFds ?? 16,
    maxDataXferSize: o.maxDataXferSize ?? 1048576,
    maxDmaRegions: o.maxDmaRegions ?? 65535,
    maxDirtyBitmapSize: o.maxDirtyBitmapSize ?? 256 * 1048576,
    callbackTimeoutMs: o.callbackTimeoutMs ?? 4000,
    viewRevokeTimeoutMs: o.viewRevokeTimeoutMs ?? Math.floor((o.callbackTimeoutMs ?? 4000) / 2),
    requestTimeoutMs: o.requestTimeoutMs ?? 4000,
    socketMode: o.socketMode ?? 0o600,
    allowedUids: o.allowedUids ?? null,
    requireBusMaster: o.requireBusMaster ?? true,
    writeMultiple: o.writeMultiple ?? true,
    twinSocket: o.twinSocket ?? true,
    maxQueuedCommands: o.maxQueuedCommands ?? 4096,
    maxRefusedConnections: o.maxRefusedConnections ?? 4,
    dedicatedThread: o.dedicatedThread ?? false,
  };
  const positive = ['maxMessageSize', 'maxDataXferSize', 'maxDmaRegions', 'maxDirtyBitmapSize', 'callbackTimeoutMs', 'viewRevokeTimeoutMs', 'requestTimeoutMs', 'maxQueuedCommands'] as const;
  for (const k of positive) {
    if (!Number.isSafeInteger(r[k]) || r[k] <= 0) throw new RangeError(`option ${k} must be a positive integer`);
  }
  if (!Number.isInteger(r.maxMsgFds) || r.maxMsgFds < 1 || r.maxMsgFds > 16) throw new RangeError('maxMsgFds must be 1..16 (QEMU refuses more)');
  if (r.maxDataXferSize > 64 * 1048576) throw new RangeError('maxDataXferSize must be <= 64 MiB (QEMU refuses more)');
  if (r.maxMessageSize < r.maxDataXferSize + 32) throw new RangeError('maxMessageSize must hold a full transfer plus headers');
  if (r.viewRevokeTimeoutMs >= r.callbackTimeoutMs) throw new RangeError('viewRevokeTimeoutMs must be below callbackTimeoutMs (the unmap must still be answered)');
  if (r.maxDmaRegions > 65535) throw new RangeError('maxDmaRegions must be <= 65535 (QEMU refuses more)');
  return r;
}
