// vfio-user-ts: PCI devices as Node.js programs, served over vfio-user.
export * from './server/index.js';
export * from './client/index.js';
/**
 * The vfio-user protocol layer: constants and a codec (encode/decode pair)
 * for the payload of every command, decoders that refuse bad input with a
 * ProtocolError carrying an errno.
 */
export * as protocol from './protocol/index.js';
/**
 * The PCI layer: the config space model a DeviceContext serves (header,
 * BARs, capabilities), the MSI-X table, register constants, and a decoder
 * of raw config space.
 */
export * as pci from './pci/index.js';
export { consoleLogger, silentLogger, type Logger, type LogLevel } from './util/logger.js';
export { VfioUserError, ProtocolError, RemoteError } from './protocol/errors.js';
export type { Message } from './transport/types.js';
export type { Payload } from './transport/endpoint.js';
