// The server process the socket fuzzer attacks: both sample devices, each on
// its own socket, serving client after client until SIGTERM.
//   node --import tsx test/fuzz/server-proc.ts DIR
// Prints one JSON line {"pid", "timer", "gpio"} on stdout once listening.
// Warnings and errors go to stderr when FUZZ_SERVER_LOG is set (debug, info,
// warn or error); an uncaught exception or unhandled rejection kills the
// process (Node's default), which the fuzzer reports as a crash.
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { createGpioDevice } from '../../samples/gpio-device.js';
import { createTimerDevice } from '../../samples/timer-device.js';
import { consoleLogger, silentLogger, type LogLevel } from '../../src/util/logger.js';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: server-proc.ts DIR\n');
  process.exit(2);
}
const level = process.env.FUZZ_SERVER_LOG as LogLevel | undefined;
const logger = level ? consoleLogger(level, 'fuzz-server') : silentLogger;
// Short callback and request timeouts keep a campaign moving when the fuzzer
// leaves the server's own DMA requests unanswered.
// Dirty bitmaps are capped at 4 MiB (default 256 MiB, QEMU's) so that the RSS
// bound the fuzzer checks is tight; test/hostile covers the cap itself.
const opts = { logger, requestTimeoutMs: 1000, callbackTimeoutMs: 2000, maxDirtyBitmapSize: 4 * 1048576 };
const timer = createTimerDevice({ ...opts, onDmaMismatch: () => {} });
const gpio = createGpioDevice(opts);
const timerPath = join(dir, 'timer.sock');
const gpioPath = join(dir, 'gpio.sock');
await timer.ctx.listen(timerPath);
await gpio.ctx.listen(gpioPath);
let refused = 0;
let snapshots = 0;
// Connection events go to stdout, one line each ("E timer connect"), so the
// fuzzer can wait for the server to finish with one client before the next.
for (const [name, c] of [['timer', timer.ctx], ['gpio', gpio.ctx]] as const) {
  c.on('connect', () => process.stdout.write(`E ${name} connect\n`));
  c.on('disconnect', () => process.stdout.write(`E ${name} disconnect\n`));
  c.on('refused', () => {
    refused++;
    process.stdout.write(`E ${name} refused\n`);
  });
  c.on('error', (e) => process.stderr.write(`fuzz-server: device error: ${e.message}\n`));
}
// SIGUSR2: collect garbage (the fuzzer starts us with --expose-gc) and report
// memory on stderr, so that the RSS measured after a campaign is what stays
// live, not what the collector has yet to reclaim.
process.on('SIGUSR2', () => {
  (globalThis as { gc?: () => void }).gc?.();
  // FUZZ_SERVER_SNAPSHOTS=DIR: a heap snapshot at each report, to see what a campaign leaves live.
  if (process.env.FUZZ_SERVER_SNAPSHOTS) writeHeapSnapshot(join(process.env.FUZZ_SERVER_SNAPSHOTS, `fuzz-server-${process.pid}-${++snapshots}.heapsnapshot`));
  const m = process.memoryUsage();
  const mib = (n: number): string => (n / 1048576).toFixed(1);
  process.stdout.write(`M ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers })}\n`);
  process.stderr.write(`fuzz-server: memory rss ${mib(m.rss)} heapUsed ${mib(m.heapUsed)} heapTotal ${mib(m.heapTotal)} external ${mib(m.external)} arrayBuffers ${mib(m.arrayBuffers)} MiB; refused ${refused}\n`);
});
// Every process warning (a TimeoutOverflowWarning from a far-off timer, a
// MaxListenersExceededWarning from a leak) goes to the fuzzer, one line each
// ("W {name, message}"), which fails the campaign on it.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  process.stdout.write(`W ${JSON.stringify({ name: w.name, message: w.message })}\n`);
});
let closing = false;
process.on('SIGTERM', () => {
  if (closing) return;
  closing = true;
  void Promise.all([timer.ctx.close(), gpio.ctx.close()]).then(() => process.exit(0));
});
process.stdout.write(JSON.stringify({ pid: process.pid, timer: timerPath, gpio: gpioPath }) + '\n');
