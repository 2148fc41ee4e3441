// Messages between the NVMe controller's thread and its I/O workers (queue
// management and lifecycle; doorbells go through doorbells.ts, guest memory
// and interrupts through the library's worker channels).
import type { MessagePort } from 'node:worker_threads';
import type { DoorbellBuffers } from './doorbells.js';

/** What a worker is started with (workerData). */
export interface IoWorkerData {
  index: number;
  backing: string;
  size: number;
  readOnly: boolean;
  doorbells: DoorbellBuffers;
  /** Int32: the controller's interrupt mode (IRQ_MODE_* in protocol.ts, or MSI's vector count). */
  irqMode: SharedArrayBuffer;
  /** Float64 counters, STAT_FIELDS per worker (see stats.ts). */
  stats: SharedArrayBuffer;
  dmaPort: MessagePort;
  irqPort: MessagePort;
  /** Entry module to load after the bootstrap (TypeScript sources run through tsx). */
  entry?: string;
}

/** irqMode value: neither MSI-X nor MSI is enabled (INTx, or nothing). */
export const IRQ_MODE_NONE = 0;
/** irqMode value: MSI-X is enabled. Positive values: MSI with that many vectors. */
export const IRQ_MODE_MSIX = -1;

export type ToIoWorker =
  | { type: 'createCq'; id: number; base: number; size: number; iv: number; ien: boolean }
  | { type: 'createSq'; id: number; base: number; size: number; cqid: number }
  | { type: 'deleteSq'; id: number; seq: number }
  | { type: 'deleteCq'; id: number }
  /** Stop fetching and wait until no command runs; answered with done. */
  | { type: 'pause'; seq: number }
  | { type: 'resume' }
  /** Controller reset: drop every queue, let running commands finish (their completions are dropped). */
  | { type: 'reset'; seq: number };

export type FromIoWorker =
  | { type: 'ready' }
  | { type: 'done'; seq: number }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; message: string }
  /** Raise CQ vector `iv` the controller's way (it could not be written from the worker). */
  | { type: 'irq'; iv: number }
  /** The controller must report fatal status (CSTS.CFS). */
  | { type: 'fatal'; message: string }
  /** This worker's share of the INTx level (an interrupt-enabled CQ holds unconsumed entries). */
  | { type: 'intx'; want: boolean };
