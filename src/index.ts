// vfio-user-ts: PCI devices as Node.js programs, served over vfio-user.
export * from './server/index.js';
export * from './client/index.js';
export * as protocol from './protocol/index.js';
export * as pci from './pci/index.js';
export { consoleLogger, silentLogger, type Logger, type LogLevel } from './util/logger.js';
export { VfioUserError, ProtocolError, RemoteError } from './protocol/errors.js';
