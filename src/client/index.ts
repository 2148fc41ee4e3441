// The vfio-user client library: connect to a device server, negotiate, and
// drive it like a VMM would (regions, interrupts, guest memory, migration).
export { VfioUserClient } from './client.js';
export { ClientSession } from './session.js';
export {
  type ClientOptions,
  type ClientEvents,
  type ClientRegionInfo,
  type DirtyReport,
  type DmaMapArgs,
  type MappedArea,
  type MappedRegion,
  type NegotiatedVersion,
  type RegionIoFdsResult,
  type ServedStats,
  type ServerCommandHandler,
} from './types.js';
export { GuestMemory, CLIENT_DIRTY_PAGE_SIZE, type GuestMemoryOptions } from './guest-memory.js';
export { ClientError, ClientErrorCode, type ClientErrorCodeValue } from './errors.js';
export { irqIndexOf, irqTypeName, type IrqEvent, type IrqTypeLike, type IrqTypeName } from './irqs.js';
export { regionName, describeRegionFlags, describeIrqFlags } from './names.js';
export * from './migrate.js';
