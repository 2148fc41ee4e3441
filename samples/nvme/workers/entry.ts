// Worker thread entry of an NVMe I/O worker: connects the library's DMA and
// interrupt channels, opens the backing file and serves doorbells.
import { parentPort, workerData } from 'node:worker_threads';
import { connectWorkerDma } from '../../../src/server/dma-worker.js';
import { connectWorkerIrq } from '../../../src/server/irq-worker.js';
import { Namespace } from '../namespace.js';
import { DoorbellHandoff } from './doorbells.js';
import { IoWorker } from './io-worker.js';
import type { IoWorkerData } from './protocol.js';

const data = workerData as IoWorkerData;
const ns = new Namespace({ path: data.backing, size: data.size, readOnly: data.readOnly });
const worker = new IoWorker({
  index: data.index,
  ns,
  dma: connectWorkerDma(data.dmaPort),
  irq: connectWorkerIrq(data.irqPort),
  doorbells: new DoorbellHandoff(data.doorbells),
  stats: data.stats,
  irqMode: new Int32Array(data.irqMode),
  port: parentPort!,
});
await worker.run();
ns.close();
