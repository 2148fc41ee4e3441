// `vfio-user nvme [-v] --backing FILE --size SIZE [--irq msix|msi] SOCKET`: serves the NVMe
// sample controller (one namespace backed by FILE) to one client after
// another until SIGINT/SIGTERM.
import { MAX_IO_WORKERS, startNvmeDevice, type NvmeDevice, type NvmeIrqMode } from '../samples/nvme/index.js';
import { consoleLogger } from '../src/util/logger.js';
import { stringOption } from './args.js';
import { DEDICATED_THREAD_OPTION, DEDICATED_THREAD_USAGE, serveUntilDone } from './serve.js';
import { SOCKET_OPTIONS, SOCKET_USAGE, socketSettings } from './socket-options.js';
import { UsageError, type CliCommand } from './types.js';

export const NVME_USAGE = [
  'usage: vfio-user nvme [-v] --backing FILE --size SIZE [--irq msix|msi] [--serial TEXT] [--io-workers N] [--sync-io-max BYTES] [--dedicated-thread] [--socket-mode MODE] [--socket-owner USER[:GROUP]] SOCKET',
  '',
  'Serves an NVMe controller with one namespace of SIZE bytes (suffixes K, M,',
  'G; a multiple of 512) stored in FILE (created if missing, grown to SIZE).',
  '--irq msi offers MSI (16 vectors) without MSI-X; the default is MSI-X.',
  'Clients are served one after another until SIGINT or SIGTERM.',
  '',
  '  --backing FILE             the namespace\'s backing file',
  '  --size SIZE                the namespace\'s size',
  '  --irq msix|msi             interrupt kind offered (default msix)',
  '  --serial TEXT              the controller\'s serial number (default VFUTS0001); controllers',
  '                             in one guest need distinct ones (the serial names the subsystem)',
  `  --io-workers N             serve the I/O queues from N worker threads (1..${MAX_IO_WORKERS}); the device then does not migrate`,
  '  --sync-io-max BYTES        reads and writes up to BYTES run as synchronous file calls,',
  '                             larger ones in the thread pool (default 1M, the MDTS; 0: all in the pool)',
  DEDICATED_THREAD_USAGE,
  SOCKET_USAGE,
  '',
].join('\n');

/** Parses "64M", "1G", "4096", "512k" (binary multiples). */
export function parseSize(s: string): number {
  const m = /^(\d+)([kKmMgGtT]?)(i?[bB])?$/.exec(s.trim());
  if (!m) throw new Error(`bad size '${s}'`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const v = Number(m[1]) * mult;
  if (!Number.isSafeInteger(v) || v <= 0 || v % 512 !== 0) throw new Error(`size ${s} must be a positive multiple of 512`);
  return v;
}

/** One line about the I/O workers' work so far (logged at info level after each client). */
export function ioWorkersSummary(dev: NvmeDevice): string | null {
  const pool = dev.controller.ioWorkers;
  if (!pool) return null;
  const per = pool.workerStats();
  const t = dev.ioWorkerStats()!;
  const high = t.highestWindowedIova >= 0 ? `0x${t.highestWindowedIova.toString(16)}` : 'none';
  return (
    `I/O workers: commands ${per.map((s) => s.ioCommands).join('/')}, interrupts ${t.interrupts} (${t.interruptsDirect} direct), ` +
    `windowed regions ${t.windowedRegions}, windowed DMA ${t.windowedAccesses} up to IOVA ${high}, revoked views ${t.revokedViews}`
  );
}

export const nvmeCommand: CliCommand = {
  name: 'nvme',
  summary: 'run the NVMe controller sample (one namespace backed by a file)',
  usage: NVME_USAGE,
  options: { backing: { type: 'string' }, size: { type: 'string' }, irq: { type: 'string' }, serial: { type: 'string' }, 'io-workers': { type: 'string' }, 'sync-io-max': { type: 'string' }, ...DEDICATED_THREAD_OPTION, ...SOCKET_OPTIONS },
  positionals: ['SOCKET'],
  async run(args, io) {
    const backing = stringOption(args, 'backing');
    const sizeText = stringOption(args, 'size');
    if (!backing) throw new UsageError('--backing FILE is required');
    if (sizeText === undefined) throw new UsageError('--size SIZE is required');
    let size: number;
    try {
      size = parseSize(sizeText);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const irq = stringOption(args, 'irq') ?? 'msix';
    if (irq !== 'msix' && irq !== 'msi') throw new UsageError(`--irq wants msix or msi, not '${irq}'`);
    const serial = stringOption(args, 'serial');
    // Identify Controller's SN field: 20 bytes of printable ASCII.
    if (serial !== undefined && !/^[\x20-\x7e]{1,20}$/.test(serial)) throw new UsageError(`--serial wants 1 to 20 printable ASCII characters, not '${serial}'`);
    const workersText = stringOption(args, 'io-workers');
    const ioWorkers = workersText === undefined ? 0 : Number(workersText);
    if (workersText !== undefined && (!/^\d+$/.test(workersText) || ioWorkers < 1 || ioWorkers > MAX_IO_WORKERS)) {
      throw new UsageError(`--io-workers wants a number of threads from 1 to ${MAX_IO_WORKERS}, not '${workersText}'`);
    }
    const syncText = stringOption(args, 'sync-io-max');
    let syncIoMax: number | undefined;
    if (syncText !== undefined) {
      const m = /^(\d+)([kKmM]?)$/.exec(syncText);
      if (!m) throw new UsageError(`--sync-io-max wants a byte count (suffix K or M), not '${syncText}'`);
      syncIoMax = Number(m[1]) * (m[2] === '' ? 1 : m[2]!.toLowerCase() === 'k' ? 1024 : 1 << 20);
    }
    const { socketMode, owner } = socketSettings(args);
    // Warnings (a guest driver misusing the controller) show even without -v.
    const logger = consoleLogger(io.verbose ? 'debug' : 'warn', 'vfio-user nvme');
    const dev = await startNvmeDevice({ backing, size, irq: irq as NvmeIrqMode, logger, socketMode, ioWorkers, lockBacking: true, ...(serial !== undefined ? { serial } : {}), ...(syncIoMax !== undefined ? { syncIoMax } : {}) });
    logger.info(`namespace 1: ${size} bytes (${size / 512} blocks) in ${backing}`);
    dev.ctx.on('disconnect', () => {
      const line = ioWorkersSummary(dev);
      if (line) logger.info(line);
    });
    try {
      return await serveUntilDone(dev.ctx, args.positionals[0]!, { exitOnDisconnect: false, dedicatedThread: args.values['dedicated-thread'] === true, owner });
    } finally {
      await dev.controller.ioWorkers?.close();
      dev.namespace.close();
    }
  },
};
