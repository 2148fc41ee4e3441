// Shapes of the conformance suite: a case, what it returns, and what the
// runner hands it.
import type { RawClient } from './raw-client.js';
import type { DeviceProfile } from './profile.js';

/** The groups, in run order (`--only` takes these names). */
export const GROUPS = ['negotiation', 'header', 'argsz', 'info', 'access', 'config', 'dma', 'irqs', 'fds', 'migration', 'disconnect'] as const;
export type GroupName = (typeof GROUPS)[number];

/** A case's verdict. */
export type CaseStatus = 'pass' | 'fail' | 'skip';

/** What a case reports besides its verdict. */
export interface CaseOutcome {
  status: CaseStatus;
  /** Why it failed or was skipped, or what it saw (where the spec allows several answers). */
  detail?: string;
}

/** What a case gets: fresh connections and what is known of the device. */
export interface CaseContext {
  /** A new connection, negotiated with VERSION unless `raw`. Closed by the runner after the case. */
  connect(raw?: boolean): Promise<RawClient>;
  /** The device as discovered before the first case. */
  readonly profile: DeviceProfile;
  /** Reply timeout (ms). */
  readonly timeoutMs: number;
  /** Open fds of the server process (null without --pid). */
  serverFdCount(): number | null;
  /** Waits until the server accepts and negotiates a new client (restarting it with --restart); false if it does not. */
  serverAlive(): Promise<boolean>;
}

/** One conformance case. */
export interface CheckCase {
  /** `group/name`, unique. */
  readonly id: string;
  readonly group: GroupName;
  /** The spec section it checks (docs/interop/vfio-user.rst heading), plus any QEMU/libvfio-user note. */
  readonly spec: string;
  /** One line: what is checked. */
  readonly title: string;
  run(ctx: CaseContext): Promise<CaseOutcome>;
}

/** A case's result as printed. */
export interface CaseResult {
  id: string;
  group: GroupName;
  spec: string;
  title: string;
  status: CaseStatus;
  detail?: string;
  ms: number;
}

/** Helpers for verdicts. */
export const pass = (detail?: string): CaseOutcome => (detail ? { status: 'pass', detail } : { status: 'pass' });
export const fail = (detail: string): CaseOutcome => ({ status: 'fail', detail });
export const skip = (detail: string): CaseOutcome => ({ status: 'skip', detail });

/** Thrown inside a case to fail it with a message (the runner catches it). */
export class CaseFailure extends Error {
  readonly code = 'ERR_CHECK_CASE_FAILED';
}

/** Fails the case unless `cond`. */
export function expect(cond: unknown, why: string): asserts cond {
  if (!cond) throw new CaseFailure(why);
}
