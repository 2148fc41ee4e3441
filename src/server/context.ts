import { EventEmitter } from 'node:events';
import type { MessagePort } from 'node:worker_threads';
import { unlinkSync } from 'node:fs';
import { isNativeError, native, type PollerHandle } from '../native/binding.js';
import { tuneAllocator } from '../native/allocator.js';
import { PciConfigSpace } from '../pci/config-space.js';
import { MsixTable } from '../pci/msix.js';
import { PCI_CAP_ID_MSIX } from '../pci/constants.js';
import type { BarDescription, MsixCapabilityDescription, PciDeviceDescription } from '../pci/types.js';
import { IrqIndex, NUM_REGIONS, RegionIndex } from '../protocol/constants.js';
import { Errno } from '../protocol/errno.js';
import { VfioUserError } from '../protocol/errors.js';
import { CMD_X_VM_INTERRUPT, encodeVmInterrupt } from '../protocol/extensions.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { Endpoint } from '../transport/endpoint.js';
import { SocketTransport } from '../transport/socket-transport.js';
import type { Transport } from '../transport/types.js';
import { Connection } from './connection.js';
import type { DeviceDescription, ResetReason } from './device.js';
import { DmaController } from './dma.js';
import { createDmaWorkerPort } from './dma-worker.js';
import { createIrqWorkerPort } from './irq-worker.js';
import { DmaTable, type DmaRegion } from './dma-table.js';
import { fastCommand, handleCommand } from './handlers.js';
import { IrqTable, IRQ_TYPE_INDEX, type IrqType, type TriggerGate, type TriggerResult } from './irqs.js';
import { MigrationController } from './migration.js';
import { resolveOptions, type ResolvedServerOptions, type ServerOptions } from './options.js';
import { Region } from './regions.js';
import { claimSocketPath, SocketInUseError } from './socket-path.js';

/** How listen() serves its clients. */
export interface ListenOptions {
  /** Polling mode: nothing happens until poll() is called (see poll()). Default false. */
  poll?: boolean;
  /** Dedicated-thread mode for this socket (see ServerOptions.dedicatedThread); default: the context's option. */
  dedicatedThread?: boolean;
}

/** Events a DeviceContext emits. */
export interface DeviceContextEvents {
  /** listen() bound the socket. */
  listening: [path: string];
  /** A client attached. */
  connect: [];
  /** The client left and its state (maps, eventfds) is dropped. */
  disconnect: [];
  /** A connection attempt refused (second client, uid not allowed). */
  refused: [reason: string];
  /** Reserved: nothing emits it today (a request's error goes back to the client as an error reply, and to the logger). */
  error: [err: Error];
  /**
   * Interrupt routing or gating may have changed: SET_IRQS (fds, masks),
   * MSI or MSI-X enable and masks, Bus Master, migration state. Devices that
   * raise interrupts from other threads refresh what they publish there.
   */
  irqStateChange: [];
}

/** The device-facing interrupt API. */
export interface InterruptApi {
  /** Raise a vector of a type. Masked vectors become pending; see TriggerResult. */
  trigger(type: IrqType, vector?: number): TriggerResult;
  /** INTx as a level: asserted until deassert; every unmask re-fires it. */
  assertIntx(): TriggerResult;
  /** INTx level down: no further INTx until the next assert (a pending one is dropped). */
  deassertIntx(): void;
  /** True when the client gave an eventfd for this vector. */
  hasEventfd(type: IrqType, vector?: number): boolean;
  /** True when the client masked this vector (SET_IRQS MASK or the MSI-X table). */
  isMasked(type: IrqType, vector?: number): boolean;
}

/**
 * A vfio-user device: its regions, config space, interrupts, DMA and
 * migration state, served to one client at a time. Create it from a
 * DeviceDescription, then listen() on a socket path (or attach() any
 * transport). Device code uses `irq`, `dma`, `region(i)` and `config`.
 */
export class DeviceContext extends EventEmitter<DeviceContextEvents> {
  /** The description the device was built from. */
  readonly description: DeviceDescription;
  /** The server options with their defaults filled in. */
  readonly options: ResolvedServerOptions;
  /** The device's logger (the `logger` option; silent by default). */
  readonly log: Logger;
  /** Built-in config space (also present when the device takes over config accesses, for BAR types). */
  readonly config: PciConfigSpace;
  /** @internal */
  readonly irqs: IrqTable;
  /** Raise interrupts: MSI/MSI-X vectors, INTx as a level. */
  readonly irq: InterruptApi;
  /** @internal */
  readonly dmaTable: DmaTable;
  /** Reach guest memory: views, copies, DMA_READ/DMA_WRITE messages. */
  readonly dma: DmaController;
  /** Migration state (`stateName`, `stopped`) and the DEVICE_FEATURE handling behind it. */
  readonly migration: MigrationController;
  /** The MSI-X table and PBA the library serves, when the device has MSI-X. */
  readonly msix: MsixTable | null = null;
  /** Regions 0-8 by index (`region(i)` checks the index). */
  readonly regions: Region[];
  private conn: Connection | null = null;
  private listenFd = -1;
  private listenPoller: PollerHandle | null = null;
  private socketPath: string | null = null;
  private pollMode = false;
  private dedicatedThread = false;
  private destroyed = false;
  /** Set while a client's connection is being torn down. */
  private cleanup: Promise<void> | null = null;
  /** Client touched the MSI-X table: from then on its masks are honoured (QEMU never does; it emulates the table). */
  private msixTableDriven = false;
  /** Refused connections still open to be told why. */
  private refusedOpen = 0;
  /**
   * The MSI and MSI-X Enable bits as the client last wrote them; undefined
   * until it writes the MSI capability / the MSI-X Message Control. Once
   * written they gate the device's interrupts (a client that never programs
   * config space, like our own, gets them regardless).
   */
  private msiEnable: boolean | undefined;
  private msixEnable: boolean | undefined;
  /** What the last MSI-X table delivery did (MsixTable.fire reports only 'delivered'). */
  private msixDelivery: TriggerResult = 'delivered';
  private readonly workerRevokers = new Set<(iova: bigint, size: bigint) => Promise<void>>();
  private readonly dmaMapListeners = new Set<(r: DmaRegion) => void>();
  /** Worker interrupt channels: refreshed after every change of interrupt state. */
  private readonly irqStateListeners = new Set<() => void>();

  constructor(description: DeviceDescription, options: ServerOptions = {}) {
    super();
    this.description = description;
    this.options = resolveOptions(options, silentLogger);
    tuneAllocator();
    this.log = this.options.logger;
    const regions: Region[] = [];
    for (let i = 0; i < NUM_REGIONS; i++) {
      if (i === RegionIndex.CONFIG) {
        regions.push(new Region(i, undefined));
        continue;
      }
      const spec = description.regions?.[i as 0 | 1 | 2 | 3 | 4 | 5 | 6 | 8];
      regions.push(new Region(i, spec));
    }
    this.regions = regions;
    this.config = new PciConfigSpace(this.pciDescription(), {
      onFlr: () => this.onFlr(),
      onCommandChange: () => this.onCommandChange(),
      onMsixControlChange: (c) => {
        this.msixEnable = c.enabled;
        this.msix?.setControl(c);
        this.irqStateChanged();
      },
      onMsiChange: (m) => {
        this.msiEnable = m.enabled;
        this.irqStateChanged();
      },
    });
    // Region 7 is the config space, 256 or 4096 bytes, always read/write.
    this.regions[RegionIndex.CONFIG] = new Region(RegionIndex.CONFIG, {
      size: this.config.size,
      read: (off, n) => (description.config ? description.config.read(off, n) : this.config.read(off, n)),
      write: (off, d) => (description.config ? description.config.write(off, d) : this.config.write(off, d)),
    });
    const msixCap = description.capabilities?.find((c): c is MsixCapabilityDescription => c.type === 'msix');
    if (msixCap) this.msix = this.setupMsix(msixCap);
    this.irqs = new IrqTable(
      { ...description.irqs, msix: description.irqs?.msix ?? msixCap?.tableSize ?? 0 },
      {
        gate: (index) => this.irqGate(index),
        onChange: () => this.irqStateChanged(),
        message: (index, vector) => {
          const c = this.conn;
          if (!c || c.closed || !c.irqMessages) return false;
          c.endpoint.post(CMD_X_VM_INTERRUPT, encodeVmInterrupt({ index, vector }));
          return true;
        },
      },
      this.log,
    );
    this.irq = this.makeInterruptApi();
    this.dmaTable = new DmaTable({ maxRegions: this.options.maxDmaRegions, pageSize: native.pageSize() });
    this.dma = new DmaController({
      table: this.dmaTable,
      channel: () => (this.conn && !this.conn.closed ? { endpoint: this.conn.dmaEndpoint, maxXfer: this.conn.peerCaps?.maxDataXferSize ?? 1048576 } : null),
      allowed: () => this.dmaAllowed(),
    });
    this.migration = new MigrationController(description.migration, {
      table: this.dmaTable,
      maxBitmapSize: this.options.maxDirtyBitmapSize,
      quiesced: (fn) => this.quiesced(fn),
      onState: () => this.irqStateChanged(),
    });
  }

  private pciDescription(): PciDeviceDescription {
    const d = this.description;
    const bars: (BarDescription | undefined)[] = [];
    for (let i = 0; i < 6; i++) {
      const r = d.regions?.[i as 0];
      bars.push(r && r.size > 0 ? { size: r.size, kind: r.kind ?? 'mem32', ...(r.prefetchable ? { prefetchable: true } : {}) } : undefined);
    }
    return {
      vendorId: d.vendorId,
      deviceId: d.deviceId,
      subsystemVendorId: d.subsystemVendorId ?? 0,
      subsystemId: d.subsystemId ?? 0,
      classCode: d.classCode ?? 0,
      revision: d.revision ?? 0,
      express: d.express ?? false,
      intxPin: (d.irqs?.intx ?? 0) > 0,
      bars,
      ...(d.regions?.[6] ? { rom: { size: d.regions[6].size } } : {}),
      capabilities: d.capabilities ?? [],
      extendedCapabilities: d.extendedCapabilities ?? [],
    };
  }

  /** Serves the MSI-X table and PBA inside their BAR(s). */
  private setupMsix(cap: MsixCapabilityDescription): MsixTable {
    const table = new MsixTable({
      size: cap.tableSize,
      deliver: (v) => {
        this.msixDelivery = this.irqs.trigger(IrqIndex.MSIX, v);
      },
    });
    const tableRegion = this.regions[cap.tableBar];
    const pbaRegion = this.regions[cap.pbaBar];
    if (!tableRegion?.configured || !pbaRegion?.configured) {
      throw new VfioUserError('ERR_VFIO_USER_INVALID_DEVICE', 'MSI-X table/PBA BAR is not configured');
    }
    tableRegion.overlays.push({
      offset: cap.tableOffset,
      size: table.tableBytes,
      read: (off, n) => table.readTable(off, n),
      write: (off, d) => {
        this.msixTableDriven = true;
        table.writeTable(off, d);
        this.irqStateChanged();
      },
    });
    pbaRegion.overlays.push({
      offset: cap.pbaOffset,
      size: table.pbaBytes,
      read: (off, n) => this.readPba(off, n),
      write: () => {},
    });
    return table;
  }

  /** PBA as the client sees it: the table's pending bits, or those of SET_IRQS masks when the client drives masking itself. */
  private readPba(off: number, n: number): Uint8Array {
    if (this.msixTableDriven) return this.msix!.readPba(off, n);
    const out = new Uint8Array(n);
    for (const v of this.irqs.pendingVectors(IrqIndex.MSIX)) {
      const bit = v - off * 8;
      if (bit >= 0 && bit < n * 8) out[bit >> 3]! |= 1 << (bit & 7);
    }
    return out;
  }

  private makeInterruptApi(): InterruptApi {
    return {
      trigger: (type, vector = 0) => {
        const index = IRQ_TYPE_INDEX[type];
        if (index === IrqIndex.MSIX && this.msix && this.msixTableDriven) {
          const gate = this.irqGate(index);
          if (gate) return this.irqs.notDelivered(index, vector, gate);
          this.msixDelivery = 'delivered';
          const r = this.msix.fire(vector);
          if (r === 'disabled') return this.irqs.notDelivered(index, vector, 'msix-disabled');
          if (r === 'pending') return this.irqs.notDelivered(index, vector, 'masked');
          // 'delivered': MsixTable called deliver(), which triggered the eventfd (or found none).
          return this.msixDelivery;
        }
        if (index === IrqIndex.INTX) this.config.setInterruptStatus(true);
        return this.irqs.trigger(index, vector);
      },
      assertIntx: () => {
        this.config.setInterruptStatus(true);
        return this.irqs.assertIntx();
      },
      deassertIntx: () => {
        this.config.setInterruptStatus(false);
        this.irqs.deassertIntx();
      },
      hasEventfd: (type, vector = 0) => this.irqs.hasFd(IRQ_TYPE_INDEX[type], vector),
      isMasked: (type, vector = 0) => this.irqs.isMasked(IRQ_TYPE_INDEX[type], vector),
    };
  }

  /** Why the device may not raise an interrupt of `index` now, or null. */
  private irqGate(index: number): TriggerGate | null {
    if (this.migration.stopped) return 'device-stopped';
    if (index === IrqIndex.INTX) return this.config.intxDisabled ? 'intx-disabled' : null;
    if (index === IrqIndex.MSI || index === IrqIndex.MSIX) {
      if (this.options.requireBusMaster && !this.config.busMasterEnabled) return 'bus-master-off';
      if (index === IrqIndex.MSI && this.msiEnable === false) return 'msi-disabled';
      if (index === IrqIndex.MSIX && this.msixEnable === false) return 'msix-disabled';
    }
    return null;
  }

  private dmaAllowed(): boolean {
    if (this.migration.stopped) return false;
    return !this.options.requireBusMaster || this.config.busMasterEnabled;
  }

  private onCommandChange(): void {
    this.irqStateChanged();
    // INTx-Disable cleared while the line is still asserted: the interrupt is delivered now.
    if (!this.config.intxDisabled && this.irqs.intxAsserted && this.irqs.count(IrqIndex.INTX) > 0) {
      this.irqs.trigger(IrqIndex.INTX, 0);
    }
  }

  private onFlr(): void {
    // The config write that triggered FLR is being handled; run the reset right after it, in order.
    const conn = this.conn;
    const run = () =>
      this.quiesced(async () => {
        this.msix?.reset();
        this.msixTableDriven = false;
        this.msiEnable = undefined;
        this.msixEnable = undefined;
        await this.description.reset?.('flr');
      });
    if (conn) conn.runAfterQueue(run);
    // No client to answer: a failing reset is the device's to report, in the log.
    else run().catch((e: unknown) => this.log.warn(`reset(flr) failed: ${errorMessage(e)}`));
  }

  /** Region i (0-8): its memory (shared regions) and size. */
  region(index: number): Region {
    const r = this.regions[index];
    if (!r) throw new RangeError(`no region ${index}`);
    return r;
  }

  /**
   * Registers an ioeventfd for a doorbell: a client that asks with
   * GET_REGION_IO_FDS (QEMU 11.1 does not) gets the fd and can signal it
   * (e.g. from KVM on a guest write) instead of sending REGION_WRITE;
   * `onSignal` runs with the number of signals. `size` 0 matches any access
   * size; `datamatch` restricts to one written value.
   */
  addIoEventFd(
    regionIndex: number,
    opts: { offset: number; size: number; datamatch?: bigint; onSignal: (count: number) => void },
  ): {
    /** The eventfd a client receives with GET_REGION_IO_FDS. */
    fd: number;
    /** Unregisters the ioeventfd and closes it. */
    remove(): void;
  } {
    const region = this.region(regionIndex);
    if (!region.configured || opts.offset < 0 || opts.offset + Math.max(opts.size, 1) > region.size) {
      throw new VfioUserError('ERR_VFIO_USER_INVALID_DEVICE', `ioeventfd at ${opts.offset} outside region ${regionIndex}`);
    }
    const fd = native.eventfd(0, native.EFD_NONBLOCK);
    const poller = new native.Poller(fd, (status) => {
      if (status < 0) return;
      const n = native.eventfdRead(fd);
      if (n > 0n) opts.onSignal(Number(n));
    });
    poller.start(native.READABLE);
    poller.unref();
    // I/O BARs are port I/O to KVM.
    const pio = this.description.regions?.[regionIndex as 0]?.kind === 'io' ? 2 : 0;
    const entry = { offset: opts.offset, size: opts.size, fd, flags: pio, ...(opts.datamatch !== undefined ? { datamatch: opts.datamatch } : {}) };
    region.ioeventfds.push(entry);
    return {
      fd,
      remove: () => {
        const i = region.ioeventfds.indexOf(entry);
        if (i < 0) return;
        region.ioeventfds.splice(i, 1);
        poller.close();
        native.close(fd);
      },
    };
  }

  /** True while a client is attached. */
  get connected(): boolean {
    return this.conn !== null && !this.conn.closed;
  }

  /** The current client's connection (null without one). @internal */
  get connection(): Connection | null {
    return this.conn;
  }

  /**
   * Runs `fn` with the device quiesced: the device's quiesce hook first (the
   * command queue waits for it), its resume hook once `fn` is done, whether
   * it succeeded or not.
   */
  async quiesced<T>(fn: () => Promise<T> | T): Promise<T> {
    await this.description.quiesce?.();
    try {
      return await fn();
    } finally {
      await this.description.resume?.();
    }
  }

  /** Device reset with a reason; returns migration to RUNNING. */
  reset(reason: ResetReason): Promise<void> {
    return this.quiesced(async () => {
      await this.description.reset?.(reason);
      if (reason === 'device-reset') await this.migration.resetToRunning();
    });
  }

  /**
   * Listens on a UNIX socket path (mode 0600 by default) and serves one
   * client after another. A stale socket file at the path (nobody accepts on
   * it) is replaced; a live one, or any other file, is left alone and the
   * call fails with SocketInUseError (code 'EADDRINUSE').
   */
  async listen(path: string, opts: ListenOptions = {}): Promise<void> {
    if (this.listenFd >= 0) throw new VfioUserError('ERR_VFIO_USER_STATE', 'already listening');
    claimSocketPath(path);
    try {
      this.listenFd = native.listen(path, this.options.socketMode, 1);
    } catch (e) {
      // Someone took the path between the check and the bind.
      if (isNativeError(e, 'EADDRINUSE')) throw new SocketInUseError(path, 'another socket or file appeared there', { cause: e });
      throw e;
    }
    this.socketPath = path;
    this.pollMode = opts.poll ?? false;
    this.dedicatedThread = opts.dedicatedThread ?? this.options.dedicatedThread;
    if (!this.pollMode) {
      this.listenPoller = new native.Poller(this.listenFd, () => this.acceptPending());
      this.listenPoller.start(native.READABLE);
    }
    this.log.info(`listening on ${path}`);
    this.emit('listening', path);
  }

  /** Accepts waiting connections: the first becomes the client, others are refused. */
  private acceptPending(): void {
    // While the last client is being cleaned up, the next one waits in the
    // backlog (this runs again once cleanup is done) instead of being
    // refused: a client that connects right after another left is served.
    if (this.cleanup && !this.pollMode) {
      this.listenPoller?.stop();
      return;
    }
    if (!this.pollMode && this.listenPoller) this.listenPoller.start(native.READABLE);
    for (;;) {
      let fd: number;
      try {
        fd = native.accept(this.listenFd);
      } catch (e) {
        this.log.warn(`accept failed: ${(e as Error).message}`);
        return;
      }
      if (fd < 0) return;
      const refusal = this.refusal(fd);
      if (refusal) {
        this.log.warn(`refused connection: ${refusal.why}`);
        this.emit('refused', refusal.why);
        this.answerRefused(fd, refusal.errno);
        continue;
      }
      const t = new SocketTransport(fd, { maxMessageSize: this.options.maxMessageSize, maxFdsPerMessage: this.options.maxMsgFds });
      if (this.pollMode) t.enablePullMode();
      const conn = this.attach(t);
      if (this.dedicatedThread && !this.pollMode) t.setBlockingReceive(() => conn.idle);
    }
  }

  private refusal(fd: number): { why: string; errno: number } | null {
    if (this.conn || this.cleanup) return { why: 'a client is already attached', errno: Errno.EBUSY };
    if (this.options.allowedUids) {
      const cred = native.peerCred(fd);
      if (!this.options.allowedUids.includes(cred.uid)) return { why: `uid ${cred.uid} (pid ${cred.pid}) not allowed`, errno: Errno.EACCES };
    }
    return null;
  }

  /**
   * Tells a refused client why: its first request (VERSION) gets an error
   * reply with `errno` (EBUSY: another client is attached), where a bare
   * close would leave it with EPIPE or a reset. Held for at most a second,
   * and only maxRefusedConnections at a time; closing is shutdown, drain,
   * close as everywhere.
   */
  private answerRefused(fd: number, errno: number): void {
    if (this.refusedOpen >= this.options.maxRefusedConnections) {
      // Nothing was sent or received yet, so a plain close is clean here.
      native.close(fd);
      return;
    }
    let ep: Endpoint;
    try {
      ep = new Endpoint(new SocketTransport(fd, { maxMessageSize: 65536, maxFdsPerMessage: this.options.maxMsgFds }));
    } catch (e) {
      this.log.warn(`refused connection: ${(e as Error).message}`);
      native.close(fd);
      return;
    }
    this.refusedOpen++;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void ep.close().finally(() => this.refusedOpen--);
    };
    const timer = setTimeout(finish, 1000);
    timer.unref();
    ep.setHandlers({
      onCommand: (m) => {
        ep.transport.releaseFds(m.fds);
        ep.replyError(m.header, errno);
        finish();
      },
      onFramingError: (e) => {
        ep.replyError(e.header, errno);
        finish();
      },
      onClose: finish,
    });
  }

  /** Serves a client over any transport (a socket, or an in-memory pair in tests). @internal */
  attach(transport: Transport): Connection {
    if (this.conn) throw new VfioUserError('ERR_VFIO_USER_BUSY', 'a client is already attached');
    const conn = new Connection(
      transport,
      (msg, c) => handleCommand(this, c, msg),
      {
        logger: this.log,
        requestTimeoutMs: this.options.requestTimeoutMs,
        callbackTimeoutMs: this.options.callbackTimeoutMs,
        maxQueuedCommands: this.options.maxQueuedCommands,
        maxMessageSize: this.options.maxMessageSize,
      },
      (c) => this.onConnectionClosed(c),
      (b, at, size, c) => fastCommand(this, c, b, at, size),
    );
    this.conn = conn;
    this.log.info('client connected');
    this.emit('connect');
    return conn;
  }

  /**
   * Client gone: after the commands it already sent, quiesce, drop its DMA
   * maps and interrupt fds, and reset with 'lost-connection'. Device state
   * (registers, memory, migration state) stays for the next client.
   */
  private onConnectionClosed(conn: Connection): void {
    if (this.conn !== conn) return;
    const done = new Promise<void>((resolve) => {
      conn.runAfterQueue(async () => {
        try {
          await this.dropClientState();
        } finally {
          resolve();
        }
      });
    });
    const cleanup = done.then(() => {
      if (this.conn === conn) this.conn = null;
      this.cleanup = null;
      this.log.info('client disconnected');
      try {
        this.emit('disconnect');
      } finally {
        // Connections that queued up while cleaning up get their turn now,
        // also when a 'disconnect' listener threw.
        if (this.listenFd >= 0 && !this.pollMode && !this.destroyed) this.acceptPending();
      }
    });
    this.cleanup = cleanup;
    // Nobody awaits this promise: what fails here (a listener that throws)
    // is reported, never left as an unhandled rejection.
    cleanup.catch((e: unknown) => this.reportError('after disconnect', e));
  }

  /** An error with no caller to take it: 'error' listeners get it, the log always does. */
  private reportError(where: string, e: unknown): void {
    this.log.error(`${where}: ${errorMessage(e)}`);
    if (this.listenerCount('error') > 0) this.emit('error', e instanceof Error ? e : new Error(String(e)));
  }

  /**
   * Like quiesced(), but the client's state goes whatever the device's hooks
   * do: a quiesce or resume that throws is logged, and the next client still
   * starts without the old one's DMA maps and interrupt fds.
   */
  private async dropClientState(): Promise<void> {
    try {
      await this.description.quiesce?.();
    } catch (e) {
      this.log.warn(`quiesce before dropping the client failed: ${errorMessage(e)}`);
    }
    try {
      await this.dropClientStateQuiesced();
    } finally {
      try {
        await this.description.resume?.();
      } catch (e) {
        this.log.warn(`resume after dropping the client failed: ${errorMessage(e)}`);
      }
    }
  }

  /**
   * The client's memory and interrupts go first, so that a device resuming
   * work below (an abandoned pre-copy returns to RUNNING) cannot reach them.
   */
  private async dropClientStateQuiesced(): Promise<void> {
    for (const r of this.dmaTable.removeAll()) {
      try {
        await this.description.dma?.onUnmap?.(r.info());
      } catch (e) {
        this.log.warn(`onUnmap failed: ${(e as Error).message}`);
      }
      try {
        await this.retireRegion(r);
      } catch (e) {
        // A worker that cannot be reached must not keep the mapping alive.
        this.log.warn(`retiring DMA region 0x${r.iova.toString(16)} failed: ${errorMessage(e)}`);
        r.release();
      }
    }
    this.dmaTable.stopLogging();
    this.irqs.dropClient();
    try {
      await this.migration.clientGone();
    } catch (e) {
      this.log.warn(`migration cleanup failed: ${errorMessage(e)}`);
    }
    try {
      await this.description.reset?.('lost-connection');
    } catch (e) {
      this.log.warn(`reset(lost-connection) failed: ${(e as Error).message}`);
    }
  }

  /**
   * Waits until no worker thread holds a mapping of `region` (DMA_UNMAP is
   * answered only after that). Workers register through dma-worker.ts; each
   * waits up to viewRevokeTimeoutMs for its views, then revokes them.
   * @internal
   */
  async revokeWorkerMappings(region: DmaRegion): Promise<void> {
    await Promise.all([...this.workerRevokers].map((revoke) => revoke(region.iova, region.size)));
  }

  /**
   * Takes a region out of service after it left the table: waits (up to
   * viewRevokeTimeoutMs) until the device released its views, read and
   * write, and every worker dropped its mapping; then unmaps. Views still
   * held are revoked (their pages become inaccessible: a readv in flight
   * fails with EFAULT and can never reach memory mapped later).
   * @internal
   */
  async retireRegion(region: DmaRegion): Promise<void> {
    const [, allReleased] = await Promise.all([this.revokeWorkerMappings(region), region.waitForViews(this.options.viewRevokeTimeoutMs)]);
    const revoked = region.release();
    if (!allReleased && revoked > 0) {
      this.log.warn(`DMA region 0x${region.iova.toString(16)}+0x${region.size.toString(16)} unmapped with ${revoked} view(s) still held: revoked`);
    }
  }

  /** Called for every new DMA region (after the device's onMap); returns its removal. @internal */
  addDmaMapListener(fn: (r: DmaRegion) => void): () => void {
    this.dmaMapListeners.add(fn);
    return () => this.dmaMapListeners.delete(fn);
  }

  /** Tells listeners (worker channels) about a new region. @internal */
  notifyDmaMapped(r: DmaRegion): void {
    for (const fn of this.dmaMapListeners) fn(r);
  }

  /**
   * A MessagePort for a worker thread that wants to reach guest memory:
   * pass it to the worker and call connectWorkerDma(port) there. DMA_UNMAP
   * waits until the worker has dropped its mapping.
   */
  dmaWorkerPort(): MessagePort {
    return createDmaWorkerPort(this);
  }

  /**
   * A MessagePort for a worker thread that raises interrupts: pass it to the
   * worker and call connectWorkerIrq(port) there. MSI and MSI-X triggers are
   * written to the client's eventfd by the worker itself (through its own dup
   * of the fd, so SET_IRQS can replace or close the fd at any time) when
   * nothing gates them; others go through this thread's trigger().
   */
  irqWorkerPort(): MessagePort {
    return createIrqWorkerPort({
      irqCount: (index) => this.irqs.count(index),
      directEventfd: (index, vector) => {
        const c = this.conn;
        if (!c || c.closed || c.irqMessages || this.irqGate(index) !== null) return -1;
        // MSI-X masks the client drives through the table live in MsixTable: those go the long way.
        if (index === IrqIndex.MSIX && this.msix && this.msixTableDriven) return -1;
        return this.irqs.directFd(index, vector);
      },
      irqFdGeneration: (index, vector) => this.irqs.fdGeneration(index, vector),
      trigger: (type, vector) => this.irq.trigger(type, vector),
      addIrqStateListener: (fn) => {
        this.irqStateListeners.add(fn);
        return () => this.irqStateListeners.delete(fn);
      },
    });
  }

  /** Something that gates interrupts changed: worker channels republish what they may deliver directly. */
  private irqStateChanged(): void {
    for (const fn of this.irqStateListeners) fn();
    this.emit('irqStateChange');
  }

  /** Registers a revoker (one per worker channel); returns its removal. @internal */
  addWorkerRevoker(revoke: (iova: bigint, size: bigint) => Promise<void>): () => void {
    this.workerRevokers.add(revoke);
    return () => this.workerRevokers.delete(revoke);
  }

  /** Resolves once the current client (if any) has gone and its state is dropped. */
  async waitForDisconnect(): Promise<void> {
    if (!this.conn) return;
    await new Promise<void>((resolve) => this.once('disconnect', () => resolve()));
  }

  /**
   * Non-blocking polling mode (listen({poll: true})): accepts a waiting
   * client or handles at most one ready message. Returns the number of
   * messages handled (0 or 1). Async handlers complete on the event loop.
   */
  poll(): number {
    if (!this.pollMode) throw new VfioUserError('ERR_VFIO_USER_STATE', 'poll() needs listen({ poll: true })');
    if (!this.conn) {
      if (!this.cleanup) this.acceptPending();
      return 0;
    }
    const msg = this.conn.transport.readMessage();
    if (!msg) return 0;
    this.conn.endpoint.dispatch(msg);
    return 1;
  }

  /** Disconnects the client (if any), stops listening and frees the device's memory. */
  async close(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.listenPoller?.close();
    this.listenPoller = null;
    if (this.listenFd >= 0) {
      native.close(this.listenFd);
      this.listenFd = -1;
    }
    if (this.socketPath) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // already gone
      }
      this.socketPath = null;
    }
    if (this.conn) {
      const wait = this.waitForDisconnect();
      await this.conn.close();
      await wait;
    }
    for (const r of this.regions) r.destroy();
  }
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
