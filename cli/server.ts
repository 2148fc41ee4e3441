import { createTimerDevice } from '../samples/timer-device.js';
import { DEDICATED_THREAD_USAGE, serveUntilDone, takeDedicatedThread } from './serve.js';
import { UsageError, type CliCommand } from './types.js';

export const serverCommand: CliCommand = {
  name: 'server',
  summary: 'run the timer-interrupt sample device (libvfio-user sample compatible)',
  usage: [
    'usage: vfio-user server [-v] [--keep] [--dedicated-thread] SOCKET',
    '',
    'Serves the sample device on SOCKET: BAR0 takes a time (u64, seconds since',
    'the Epoch) and raises INTx then, followed by DMA into the client memory;',
    'BAR1 is 16 KiB of shared memory. Exits 0 when its client disconnects',
    '(after a migration the source exits), or serves client after client with',
    '--keep. Exits 1 if a DMA read-back check failed.',
    '',
    DEDICATED_THREAD_USAGE,
    '',
  ].join('\n'),
  async run(argv, io) {
    const { args, dedicatedThread } = takeDedicatedThread(argv);
    const keep = args.includes('--keep');
    const rest = args.filter((a) => a !== '--keep');
    if (rest.length !== 1 || rest[0]!.startsWith('-')) throw new UsageError('expected one SOCKET path');
    let dmaFailed = false;
    const dev = createTimerDevice({ logger: io.logger, onDmaDone: (ok) => (dmaFailed ||= !ok) });
    return serveUntilDone(dev.ctx, rest[0]!, { exitOnDisconnect: !keep, dedicatedThread, exitCode: () => (dmaFailed ? 1 : 0) });
  },
};
