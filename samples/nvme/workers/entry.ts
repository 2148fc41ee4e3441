// Worker thread entry of an NVMe I/O worker: connects the library's DMA and
// interrupt channels, opens the backing file and serves doorbells.
import { parentPort, workerData } from 'node:worker_threads';
import { connectWorkerDma } from '../../../src/server/dma-worker.js';
import { connectWorkerIrq } from '../../../src/server/irq-worker.js';
import { WorkerBacking } from './backing.js';
import { DoorbellHandoff } from './doorbells.js';
import { IoWorker } from './io-worker.js';
import type { IoWorkerData } from './protocol.js';

const data = workerData as IoWorkerData;
const backing = new WorkerBacking(data.backing, data.size, data.readOnly);
const worker = new IoWorker({
  index: data.index,
  backing,
  dma: connectWorkerDma(data.dmaPort),
  irq: connectWorkerIrq(data.irqPort),
  doorbells: new DoorbellHandoff(data.doorbells),
  stats: data.stats,
  irqMode: new Int32Array(data.irqMode),
  port: parentPort!,
});
await worker.run();
backing.close();
