export * from './types.js';
export * from './constants.js';
export { PciConfigSpace, type ResolvedBar } from './config-space.js';
export { MsixTable, type MsixEntry, type MsixFireResult, type MsixTableOptions } from './msix.js';
export * from './decode.js';
export * from './format.js';
