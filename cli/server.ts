import { createTimerDevice } from '../samples/timer-device.js';
import { DEDICATED_THREAD_OPTION, DEDICATED_THREAD_USAGE, serveUntilDone } from './serve.js';
import { SOCKET_OPTIONS, SOCKET_USAGE, socketSettings } from './socket-options.js';
import type { CliCommand } from './types.js';

export const serverCommand: CliCommand = {
  name: 'server',
  summary: 'run the timer-interrupt sample device (libvfio-user sample compatible)',
  usage: [
    'usage: vfio-user server [-v] [--keep] [--dedicated-thread] [--socket-mode MODE] [--socket-owner USER[:GROUP]] SOCKET',
    '',
    'Serves the sample device on SOCKET: BAR0 takes a time (u64, seconds since',
    'the Epoch) and raises INTx then, followed by DMA into the client memory;',
    'BAR1 is 16 KiB of shared memory. Exits 0 when its client disconnects',
    '(after a migration the source exits), or serves client after client with',
    '--keep. Exits 1 if a DMA read-back check failed.',
    '',
    '  --keep                     serve one client after another until SIGINT/SIGTERM',
    DEDICATED_THREAD_USAGE,
  SOCKET_USAGE,
    '',
  ].join('\n'),
  options: { keep: { type: 'boolean' }, ...DEDICATED_THREAD_OPTION, ...SOCKET_OPTIONS },
  positionals: ['SOCKET'],
  async run(args, io) {
    const { socketMode, owner } = socketSettings(args);
    let dmaFailed = false;
    const dev = createTimerDevice({ logger: io.logger, socketMode, onDmaDone: (ok) => (dmaFailed ||= !ok) });
    return serveUntilDone(dev.ctx, args.positionals[0]!, { exitOnDisconnect: args.values.keep !== true, dedicatedThread: args.values['dedicated-thread'] === true, exitCode: () => (dmaFailed ? 1 : 0), owner, err: io.err });
  },
};
