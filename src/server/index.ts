// The device server: describe a device as data plus callbacks; the context
// serves it over vfio-user.
export { DeviceContext, type DeviceContextEvents, type InterruptApi, type ListenOptions } from './context.js';
export type {
  ConfigAccessHandlers,
  DeviceDescription,
  DmaCallbacks,
  MigrationCallbacks,
  MigrationStateName,
  MmapArea,
  RegionReadHandler,
  RegionReadIntoHandler,
  RegionWriteFromHandler,
  RegionSpec,
  RegionWriteHandler,
  ResetReason,
} from './device.js';
export type { ServerOptions, ResolvedServerOptions } from './options.js';
export { DmaError, type DmaController, type DmaView, type DmaAccessOptions, type IovaLike } from './dma.js';
export type { DmaRegionInfo } from './dma-table.js';
export type { IrqCounts, IrqType, TriggerResult } from './irqs.js';
export { MigrationFatalError, type MigrationController } from './migration.js';
export { MigState, migStateName, nextHopTable } from './migration-fsm.js';
export { Region, type IoEventFd } from './regions.js';
export { stateMigration, encodeState, decodeState, DEFAULT_MAX_STATE_STREAM_BYTES, type StateMigrationSpec, type StateSections } from './state-stream.js';
export { connectWorkerDma, WorkerDma, type WorkerDmaStats } from './dma-worker.js';
export { connectWorkerIrq, WorkerIrq, type WorkerIrqStats, type WorkerTriggerResult } from './irq-worker.js';
export { SocketInUseError } from './socket-path.js';
