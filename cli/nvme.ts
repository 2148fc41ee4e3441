// `vfio-user nvme [-v] --backing FILE --size SIZE [--irq msix|msi] SOCKET`: serves the NVMe
// sample controller (one namespace backed by FILE) to one client after
// another until SIGINT/SIGTERM.
import { createNvmeDevice, type NvmeIrqMode } from '../samples/nvme/index.js';
import { consoleLogger } from '../src/util/logger.js';
import { DEDICATED_THREAD_FLAG, DEDICATED_THREAD_USAGE, serveUntilDone } from './serve.js';

export const NVME_USAGE = [
  'usage: vfio-user nvme [-v] [--dedicated-thread] --backing FILE --size SIZE [--irq msix|msi] SOCKET',
  '',
  'Serves an NVMe controller with one namespace of SIZE bytes (suffixes K, M,',
  'G; a multiple of 512) stored in FILE (created if missing, grown to SIZE).',
  '--irq msi offers MSI (16 vectors) without MSI-X; the default is MSI-X.',
  'Clients are served one after another until SIGINT or SIGTERM.',
  '',
  DEDICATED_THREAD_USAGE,
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

export async function nvmeCommand(argv: string[]): Promise<number> {
  let verbose = false;
  let dedicatedThread = false;
  let backing: string | undefined;
  let size: number | undefined;
  let irq: NvmeIrqMode = 'msix';
  const positional: string[] = [];
  try {
    for (let i = 0; i < argv.length; i++) {
      const a = argv[i]!;
      if (a === '-v' || a === '--verbose') verbose = true;
      else if (a === DEDICATED_THREAD_FLAG) dedicatedThread = true;
      else if (a === '-h' || a === '--help') {
        process.stdout.write(NVME_USAGE);
        return 0;
      } else if (a === '--backing' || a.startsWith('--backing=')) {
        backing = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
        if (!backing) throw new Error('--backing needs a FILE');
      } else if (a === '--size' || a.startsWith('--size=')) {
        const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
        if (!v) throw new Error('--size needs a SIZE');
        size = parseSize(v);
      } else if (a === '--irq' || a.startsWith('--irq=')) {
        const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
        if (v !== 'msix' && v !== 'msi') throw new Error(`--irq wants msix or msi, not '${v ?? ''}'`);
        irq = v;
      } else if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
      else positional.push(a);
    }
    if (!backing) throw new Error('--backing FILE is required');
    if (size === undefined) throw new Error('--size SIZE is required');
    if (positional.length !== 1) throw new Error('expected one SOCKET path');
  } catch (e) {
    process.stderr.write(`vfio-user nvme: ${(e as Error).message}\n\n${NVME_USAGE}`);
    return 2;
  }
  const logger = consoleLogger(verbose ? 'debug' : 'warn', 'vfio-user nvme');
  const dev = createNvmeDevice({ backing, size, irq, logger });
  logger.info(`namespace 1: ${size} bytes (${size / 512} blocks) in ${backing}`);
  try {
    return await serveUntilDone(dev.ctx, positional[0]!, { exitOnDisconnect: false, dedicatedThread });
  } finally {
    dev.namespace.close();
  }
}
