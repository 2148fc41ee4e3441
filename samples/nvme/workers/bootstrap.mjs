// Worker bootstrap for TypeScript sources (tests, a checkout without dist/):
// registers tsx in this thread (loader hooks are per thread), then loads the
// entry named in workerData.entry.
import { register } from 'tsx/esm/api';
import { workerData } from 'node:worker_threads';

register();
await import(workerData.entry);
