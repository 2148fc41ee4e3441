// An ACCES PCI-IDIO-16 isolated digital I/O card (vendor 0x494f, device
// 0x0dc8), laid out the way Linux's gpio-pci-idio-16 / gpio-idio-16 drivers
// expect: a 256-byte I/O BAR2 whose first 7 bytes are the registers, and
// INTA for change-of-state interrupts.
//
//   off  read                         write
//   0    outputs 0-7 (FET drives)     outputs 0-7
//   1    isolated inputs 0-7          clear interrupt
//   2    enable IRQ (side effect)     disable IRQ
//   3    (activate input filters)     deactivate input filters
//   4    outputs 8-15                 outputs 8-15
//   5    isolated inputs 8-15         -
//   6    interrupt status             -
//
// Input rule (our choice, documented): the inputs are wired back to the
// outputs, so input i reads what output i drives (loopback). A change of any
// input while change-of-state interrupts are enabled latches the status
// (bit 2, the bit the Linux driver's regmap-irq tests, plus bit 0 for inputs
// 0-7 and bit 1 for inputs 8-15) and asserts INTx until the driver clears it
// (write to offset 1) or disables interrupts (write to offset 2).
import { DeviceContext } from '../src/server/context.js';
import type { ServerOptions } from '../src/server/options.js';
import { silentLogger, type Logger } from '../src/util/logger.js';

export const GPIO_VENDOR_ID = 0x494f;
export const GPIO_DEVICE_ID = 0x0dc8;
export const GPIO_BAR = 2;
export const GPIO_BAR_SIZE = 0x100;

export const REG_OUT0_7 = 0;
export const REG_IN0_7 = 1;
export const REG_IRQ_CTL = 2;
export const REG_FILTER_CTL = 3;
export const REG_OUT8_15 = 4;
export const REG_IN8_15 = 5;
export const REG_IRQ_STATUS = 6;

/** What the device saw, for logs and tests. */
export interface GpioStats {
  configReads: number;
  configWrites: number;
  barReads: number;
  barWrites: number;
  interrupts: number;
}

export interface GpioDevice {
  ctx: DeviceContext;
  readonly outputs: number;
  readonly inputs: number;
  readonly irqEnabled: boolean;
  readonly stats: GpioStats;
}

export function createGpioDevice(opts: ServerOptions & { logger?: Logger } = {}): GpioDevice {
  const log = opts.logger ?? silentLogger;
  let outputs = 0; // 16 bits
  let lastInputs = 0;
  let irqEnabled = false;
  let status = 0;
  const stats: GpioStats = { configReads: 0, configWrites: 0, barReads: 0, barWrites: 0, interrupts: 0 };
  let ctxRef: DeviceContext | null = null;

  const inputs = (): number => outputs; // loopback: input i follows output i

  function setOutputs(v: number): void {
    outputs = v & 0xffff;
    const now = inputs();
    const changed = now ^ lastInputs;
    lastInputs = now;
    if (changed === 0 || !irqEnabled) return;
    status |= 0x4 | (changed & 0xff ? 0x1 : 0) | (changed & 0xff00 ? 0x2 : 0);
    stats.interrupts++;
    const r = ctxRef!.irq.assertIntx();
    log.debug(`inputs changed (0x${changed.toString(16)}): INTx ${r}`);
  }

  function clearInterrupt(): void {
    status = 0;
    ctxRef!.irq.deassertIntx();
  }

  const ctx = new DeviceContext(
    {
      vendorId: GPIO_VENDOR_ID,
      deviceId: GPIO_DEVICE_ID,
      subsystemVendorId: GPIO_VENDOR_ID,
      subsystemId: GPIO_DEVICE_ID,
      classCode: { base: 0xff, sub: 0, progIf: 0 },
      irqs: { intx: 1 },
      regions: {
        [GPIO_BAR]: {
          size: GPIO_BAR_SIZE,
          kind: 'io',
          read: (off, n) => {
            stats.barReads++;
            const out = new Uint8Array(n);
            for (let i = 0; i < n; i++) out[i] = readReg(off + i);
            log.debug(`BAR2 read  [${off}] -> ${Array.from(out).map((b) => b.toString(16)).join(' ')}`);
            return out;
          },
          write: (off, data) => {
            stats.barWrites++;
            log.debug(`BAR2 write [${off}] <- ${Array.from(data).map((b) => b.toString(16)).join(' ')}`);
            for (let i = 0; i < data.length; i++) writeReg(off + i, data[i]!);
          },
        },
      },
      reset: (reason) => {
        log.info(`reset (${reason})`);
        if (reason !== 'lost-connection') {
          outputs = 0;
          lastInputs = 0;
          irqEnabled = false;
          status = 0;
        }
      },
    },
    { ...opts, logger: log },
  );
  ctxRef = ctx;

  // Count config-space traffic too (the e2e test checks the server saw the guest).
  const cfg = ctx.region(7);
  const cfgRead = cfg.read.bind(cfg);
  const cfgWrite = cfg.write.bind(cfg);
  cfg.read = (off, n) => {
    stats.configReads++;
    return cfgRead(off, n);
  };
  // The server's fast lane reads straight into the reply buffer.
  const cfgReadInto = cfg.readInto.bind(cfg);
  cfg.readInto = (off, n, out, at) => {
    stats.configReads++;
    return cfgReadInto(off, n, out, at);
  };
  cfg.write = (off, d) => {
    stats.configWrites++;
    return cfgWrite(off, d);
  };

  function readReg(r: number): number {
    switch (r) {
      case REG_OUT0_7:
        return outputs & 0xff;
      case REG_IN0_7:
        return inputs() & 0xff;
      case REG_IRQ_CTL:
        // Reading enables change-of-state interrupts.
        irqEnabled = true;
        lastInputs = inputs();
        return 0;
      case REG_OUT8_15:
        return outputs >> 8;
      case REG_IN8_15:
        return inputs() >> 8;
      case REG_IRQ_STATUS:
        return status;
      default:
        return 0;
    }
  }

  function writeReg(r: number, v: number): void {
    switch (r) {
      case REG_OUT0_7:
        setOutputs((outputs & 0xff00) | v);
        break;
      case REG_IN0_7:
        clearInterrupt();
        break;
      case REG_IRQ_CTL:
        irqEnabled = false;
        clearInterrupt();
        break;
      case REG_OUT8_15:
        setOutputs((outputs & 0xff) | (v << 8));
        break;
      default:
        // Filter control and unused registers: accepted, no effect.
        break;
    }
  }

  return {
    ctx,
    get outputs() {
      return outputs;
    },
    get inputs() {
      return inputs();
    },
    get irqEnabled() {
      return irqEnabled;
    },
    stats,
  };
}
