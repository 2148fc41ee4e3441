// `vfio-user check`: a QEMU-free conformance suite for any vfio-user
// server. The cases, their order, and the output format.
import { accessCases } from './cases/access.js';
import { argszCases } from './cases/argsz.js';
import { configCases } from './cases/config.js';
import { disconnectCases } from './cases/disconnect.js';
import { dmaCases } from './cases/dma.js';
import { fdsCases } from './cases/fds.js';
import { headerCases } from './cases/header.js';
import { infoCases } from './cases/info.js';
import { irqsCases } from './cases/irqs.js';
import { migrationCases } from './cases/migration.js';
import { negotiationCases } from './cases/negotiation.js';
import { GROUPS, type CaseResult, type CheckCase, type GroupName } from './types.js';

export { runCheck, countFds, type CheckOptions, type CheckSummary } from './runner.js';
export { GROUPS, type CaseResult, type CheckCase, type GroupName, type CaseStatus } from './types.js';

/** Every case, in run order (grouped as GROUPS lists them). */
export const ALL_CASES: readonly CheckCase[] = [
  ...negotiationCases,
  ...headerCases,
  ...argszCases,
  ...infoCases,
  ...accessCases,
  ...configCases,
  ...dmaCases,
  ...irqsCases,
  ...fdsCases,
  ...migrationCases,
  ...disconnectCases,
].sort((a, b) => GROUPS.indexOf(a.group) - GROUPS.indexOf(b.group));

/** The cases of the given groups (all when `only` is empty). */
export function selectCases(only: readonly GroupName[] = []): CheckCase[] {
  return ALL_CASES.filter((c) => only.length === 0 || only.includes(c.group));
}

/** One text line per result: status, id, title, [spec], and what was seen. */
export function formatResult(r: CaseResult): string {
  const tag = r.status === 'pass' ? 'PASS' : r.status === 'fail' ? 'FAIL' : 'SKIP';
  return `${tag}  ${r.id}  ${r.title}  [${r.spec}]${r.detail ? `  -- ${r.detail}` : ''}`;
}

/** The closing line. */
export function formatTotals(t: { passed: number; failed: number; skipped: number }): string {
  return `${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped`;
}
