import { createGpioDevice } from '../samples/gpio-device.js';
import { DEDICATED_THREAD_OPTION, DEDICATED_THREAD_USAGE, serveUntilDone } from './serve.js';
import { SOCKET_OPTIONS, SOCKET_USAGE, socketSettings } from './socket-options.js';
import type { CliCommand } from './types.js';

export const gpioCommand: CliCommand = {
  name: 'gpio',
  summary: 'run the ACCES PCI-IDIO-16 GPIO card (Linux gpio-pci-idio-16 binds to it)',
  usage: [
    'usage: vfio-user gpio [-v] [--dedicated-thread] [--socket-mode MODE] [--socket-owner USER[:GROUP]] SOCKET',
    '',
    'Serves a PCI-IDIO-16 (494f:0dc8): 16 outputs and 16 inputs in I/O BAR2.',
    'Input i follows output i (loopback); with change-of-state interrupts',
    'enabled, an input change raises INTx. Serves one client after another',
    'until SIGINT or SIGTERM.',
    '',
    DEDICATED_THREAD_USAGE,
  SOCKET_USAGE,
    '',
  ].join('\n'),
  options: { ...DEDICATED_THREAD_OPTION, ...SOCKET_OPTIONS },
  positionals: ['SOCKET'],
  async run(args, io) {
    const { socketMode, owner } = socketSettings(args);
    const dev = createGpioDevice({ logger: io.logger, socketMode });
    const code = await serveUntilDone(dev.ctx, args.positionals[0]!, { exitOnDisconnect: false, dedicatedThread: args.values['dedicated-thread'] === true, owner, err: io.err });
    io.logger.info(`served: ${JSON.stringify(dev.stats)}`);
    return code;
  },
};
