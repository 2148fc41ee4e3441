export * from './types.js';
export * from './errors.js';
export { Framer, type FrameEvent } from './framer.js';
export { SocketTransport } from './socket-transport.js';
export { MemoryTransport, createMemoryPair, type MemoryTransportOptions } from './memory-transport.js';
export { Endpoint, type EndpointHandlers, type EndpointOptions, type RequestOptions } from './endpoint.js';
