import { createGpioDevice } from '../samples/gpio-device.js';
import { DEDICATED_THREAD_USAGE, serveUntilDone, takeDedicatedThread } from './serve.js';
import { UsageError, type CliCommand } from './types.js';

export const gpioCommand: CliCommand = {
  name: 'gpio',
  summary: 'run the ACCES PCI-IDIO-16 GPIO card (Linux gpio-pci-idio-16 binds to it)',
  usage: [
    'usage: vfio-user gpio [-v] [--dedicated-thread] SOCKET',
    '',
    'Serves a PCI-IDIO-16 (494f:0dc8): 16 outputs and 16 inputs in I/O BAR2.',
    'Input i follows output i (loopback); with change-of-state interrupts',
    'enabled, an input change raises INTx. Serves one client after another',
    'until SIGINT or SIGTERM.',
    '',
    DEDICATED_THREAD_USAGE,
    '',
  ].join('\n'),
  async run(argv, io) {
    const { args, dedicatedThread } = takeDedicatedThread(argv);
    if (args.length !== 1 || args[0]!.startsWith('-')) throw new UsageError('expected one SOCKET path');
    const dev = createGpioDevice({ logger: io.logger });
    const code = await serveUntilDone(dev.ctx, args[0]!, { exitOnDisconnect: false, dedicatedThread });
    io.logger.info(`served: ${JSON.stringify(dev.stats)}`);
    return code;
  },
};
