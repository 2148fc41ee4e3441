// `vfio-user trace`: a transparent proxy that decodes every message.
export { TraceProxy, type TraceProxyOptions } from './proxy.js';
export { traceEvent, decodePayload, shortName, type TraceEvent, type TraceDirection, type TraceValue } from './decode.js';
export { formatEvent, formatEventJson } from './format.js';
export { SummaryBuilder, formatSummary, percentile, type TraceSummary, type CommandStats } from './summary.js';
export { parseFilter } from './filter.js';
