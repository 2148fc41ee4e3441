// An NVMe controller (PCI class 01:08:02) as a vfio-user device: BAR0 holds
// the registers, the doorbells (trapped: every write is a REGION_WRITE) and
// the MSI-X table and PBA the library serves; one namespace backed by a file.
//
//   BAR0 (16 KiB, 64-bit): 0x0000 registers, 0x1000 doorbells (stride 4),
//                          0x2000 MSI-X table (17 vectors), 0x3000 PBA.
//   Capabilities: PM, MSI-X, PCI Express endpoint with FLR. INTx as fallback.
//   With `irq: 'msi'`: MSI (16 vectors) instead of MSI-X, for drivers and
//   hosts that must work without MSI-X.
//
// Doorbells are not mappable: QEMU 11.1.3 never asks for ioeventfds
// (GET_REGION_IO_FDS), without KVM a mapped doorbell page would have to be
// polled, and any mappable area would turn QEMU's posted writes off. So a
// doorbell is a posted REGION_WRITE, and the queue runs in the turn that
// received it. Shadow doorbells (Doorbell Buffer Config, which Linux's nvme
// driver uses) spare most of them: the CQ head never needs one while MSI-X
// is on, an SQ tail only when the controller had gone idle.
import { DeviceContext } from '../../src/server/context.js';
import type { ServerOptions } from '../../src/server/options.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { NvmeController, type ControllerStats } from './controller.js';
import { Namespace } from './namespace.js';
import { BAR0_SIZE, CSTS, LIMITS, MSIX_PBA_OFFSET, MSIX_TABLE_OFFSET } from './registers.js';
import { IoWorkerPool } from './workers/pool.js';
import type { IoWorkerStats } from './workers/stats.js';

export { NvmeController } from './controller.js';
export { Namespace, LBA_SIZE, BackingFileInUseError } from './namespace.js';
export { IoWorkerPool, MAX_IO_WORKERS } from './workers/pool.js';
export type { IoWorkerStats } from './workers/stats.js';
export * from './registers.js';

export const NVME_VENDOR_ID = 0x4e56; // not a PCI-SIG assignment: a sample's IDs
export const NVME_DEVICE_ID = 0x0001;

export interface NvmeDeviceOptions extends ServerOptions {
  /** Backing file (created if missing, grown to `size`). */
  backing: string;
  /** Namespace size in bytes (multiple of 512). */
  size: number;
  serial?: string;
  model?: string;
  readOnly?: boolean;
  /**
   * Lock the backing file (flock: exclusive, shared when read-only) so that no
   * second server shares or resizes it; BackingFileInUseError when another
   * holds it. Off by default: a migration destination on shared storage opens
   * the image while the source still has it. `vfio-user nvme` turns it on.
   */
  lockBacking?: boolean;
  /** Message interrupts offered: MSI-X (default) or MSI without MSI-X. */
  irq?: NvmeIrqMode;
  /**
   * Reads and writes up to this many bytes run as synchronous pread/pwrite
   * straight into guest memory, larger ones (and FUA writes) in the thread
   * pool. Default: the whole MDTS (1 MiB): page-cache copies cost less than
   * the pool's two wake-ups. 0 sends everything to the pool.
   */
  syncIoMax?: number;
  logger?: Logger;
  /**
   * Serve the I/O queues from this many worker threads (startNvmeDevice
   * only). The controller's thread keeps the registers and the admin queue.
   * Such a device does not migrate (its queue state lives in the workers).
   */
  ioWorkers?: number;
}

/** The message-signalled interrupt capability the controller offers. */
export type NvmeIrqMode = 'msix' | 'msi';

/** MSI vectors offered with `irq: 'msi'` (a power of two: MSI's Multiple Message Capable). */
export const NVME_MSI_VECTORS = 16;

export interface NvmeDevice {
  ctx: DeviceContext;
  controller: NvmeController;
  namespace: Namespace;
  readonly stats: ControllerStats;
  /** The I/O workers' counters summed, or null without workers. */
  ioWorkerStats(): IoWorkerStats | null;
  /** Closes the device and the backing file. */
  close(): Promise<void>;
}

/** Creates the NVMe device, every queue served on this thread (see startNvmeDevice for I/O workers). */
export function createNvmeDevice(opts: NvmeDeviceOptions): NvmeDevice {
  const log = opts.logger ?? silentLogger;
  if ((opts.ioWorkers ?? 0) > 0) throw new RangeError('I/O workers start asynchronously: use startNvmeDevice()');
  return buildDevice(opts, log, false);
}

/**
 * Creates the NVMe device and, with `ioWorkers`, starts its I/O worker
 * threads (resolves once each serves doorbells). Listen or attach after.
 */
export async function startNvmeDevice(opts: NvmeDeviceOptions): Promise<NvmeDevice> {
  const log = opts.logger ?? silentLogger;
  const n = opts.ioWorkers ?? 0;
  const dev = buildDevice(opts, log, n > 0);
  if (n === 0) return dev;
  const c = dev.controller;
  try {
    c.ioWorkers = await IoWorkerPool.start(dev.ctx, {
      workers: n,
      backing: opts.backing,
      size: opts.size,
      readOnly: opts.readOnly ?? false,
      maxQid: LIMITS.maxIoQueues,
      log,
      onFatal: (why) => {
        log.error(`controller fatal status: ${why}`);
        c.csts |= CSTS.CFS;
      },
      onIntxChange: () => c.updateIntx(),
    });
  } catch (e) {
    await dev.close();
    throw e;
  }
  log.info(`I/O queues served by ${n} worker thread(s)`);
  return dev;
}

function buildDevice(opts: NvmeDeviceOptions, log: Logger, workers: boolean): NvmeDevice {
  const { backing, size, serial = 'VFUTS0001', model = 'vfio-user-ts NVMe sample', readOnly, lockBacking, irq = 'msix', ioWorkers: _ioWorkers, syncIoMax, ...serverOpts } = opts;
  if (syncIoMax !== undefined && !(Number.isSafeInteger(syncIoMax) && syncIoMax >= 0)) throw new RangeError(`syncIoMax ${syncIoMax} must be a non-negative integer`);
  const namespace = new Namespace({ path: backing, size, ...(readOnly !== undefined ? { readOnly } : {}), ...(lockBacking ? { lock: true } : {}) });
  const controller = new NvmeController(
    namespace,
    { serial, model, firmware: '0.1', vendorId: NVME_VENDOR_ID, subsystemVendorId: NVME_VENDOR_ID },
    log,
  );
  const ctx = new DeviceContext(
    {
      vendorId: NVME_VENDOR_ID,
      deviceId: NVME_DEVICE_ID,
      subsystemVendorId: NVME_VENDOR_ID,
      subsystemId: NVME_DEVICE_ID,
      classCode: { base: 0x01, sub: 0x08, progIf: 0x02 },
      revision: 1,
      express: true,
      capabilities: [
        { type: 'pm' },
        irq === 'msi'
          ? { type: 'msi', vectors: NVME_MSI_VECTORS, address64: true }
          : { type: 'msix', tableSize: LIMITS.msixVectors, tableBar: 0, tableOffset: MSIX_TABLE_OFFSET, pbaBar: 0, pbaOffset: MSIX_PBA_OFFSET },
        { type: 'pcie', flr: true, maxPayloadSupported: 1 },
      ],
      regions: {
        0: {
          size: BAR0_SIZE,
          kind: 'mem64',
          read: (off, n) => controller.read(off, n),
          write: (off, data) => controller.write(off, data),
        },
      },
      irqs: irq === 'msi' ? { intx: 1, msi: NVME_MSI_VECTORS } : { intx: 1, msix: LIMITS.msixVectors },
      quiesce: () => controller.quiesce(),
      reset: (reason) => controller.reset(reason),
      // The queue state of I/O workers is not part of the migration stream.
      ...(workers
        ? {}
        : {
            migration: {
              transition: (to, from) => controller.migrationTransition(to, from),
              read: (max) => controller.migrationRead(max),
              write: (data) => controller.migrationWrite(data),
              preCopy: false,
            },
          }),
    },
    { ...serverOpts, logger: log },
  );
  controller.attach(ctx);
  if (syncIoMax !== undefined) controller.syncIoMax = syncIoMax;
  return {
    ctx,
    controller,
    namespace,
    get stats() {
      return controller.stats;
    },
    ioWorkerStats: () => controller.ioWorkers?.totals() ?? null,
    async close() {
      await ctx.close();
      await controller.ioWorkers?.close();
      namespace.close();
    },
  };
}
