// The pure vfio-user protocol layer: payload codecs for every command.
// Decoded u64 fields (offsets, addresses, sizes, counts) are `bigint`; u32
// fields are `number`. Decoders throw only ProtocolError (with an errno).
// Bulk data fields (region, DMA and migration transfers) are views of the
// payload, not copies (see viewBytes).
export * from './errno.js';
export * from './errors.js';
export * from './header.js';
export * from './commands.js';
export * from './constants.js';
export * from './ranges.js';
export * from './json.js';
export * from './version.js';
export * from './dma-map.js';
export * from './device-info.js';
export * from './region-info.js';
export * from './region-io-fds.js';
export * from './irq-info.js';
export * from './set-irqs.js';
export * from './region-access.js';
export * from './write-multi.js';
export * from './dma-rw.js';
export * from './device-feature.js';
export * from './dirty-bitmap.js';
export * from './mig-data.js';
export * from './empty.js';
export { DEFAULT_MAX_DATA_XFER_SIZE, type PayloadParts } from './wire.js';
export * from './extensions.js';
