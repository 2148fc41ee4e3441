import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextHopTable } from '../../src/server/migration-fsm.js';

// libvfio-user's next_state table and the kernel's vfio_mig_get_next_state,
// as listed in the reference (§4.3), written out by hand: the full path per
// (from, to), or null where the request is refused.
const EXPECTED: Record<string, string | null> = {
  'STOP>RUNNING': 'RUNNING',
  'STOP>STOP_COPY': 'STOP_COPY',
  'STOP>RESUMING': 'RESUMING',
  'STOP>PRE_COPY': 'RUNNING>PRE_COPY',
  'RUNNING>STOP': 'STOP',
  'RUNNING>STOP_COPY': 'STOP>STOP_COPY',
  'RUNNING>RESUMING': 'STOP>RESUMING',
  'RUNNING>PRE_COPY': 'PRE_COPY',
  'STOP_COPY>STOP': 'STOP',
  'STOP_COPY>RUNNING': 'STOP>RUNNING',
  'STOP_COPY>RESUMING': 'STOP>RESUMING',
  'STOP_COPY>PRE_COPY': null,
  'RESUMING>STOP': 'STOP',
  'RESUMING>RUNNING': 'STOP>RUNNING',
  'RESUMING>STOP_COPY': 'STOP>STOP_COPY',
  'RESUMING>PRE_COPY': 'STOP>RUNNING>PRE_COPY',
  'PRE_COPY>STOP': 'RUNNING>STOP',
  'PRE_COPY>RUNNING': 'RUNNING',
  'PRE_COPY>STOP_COPY': 'STOP_COPY',
  'PRE_COPY>RESUMING': 'RUNNING>STOP>RESUMING',
};

test('transition table equals the reference table', () => {
  assert.deepEqual(nextHopTable(true), EXPECTED);
});

test('without PRE_COPY support every arc touching it is refused', () => {
  const t = nextHopTable(false);
  for (const [k, v] of Object.entries(EXPECTED)) {
    if (k.includes('PRE_COPY')) assert.equal(t[k], null, k);
    else assert.equal(t[k], v, k);
  }
});
