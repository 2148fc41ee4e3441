// Errors of the guest harness. Library-free: this directory depends on Node's
// standard modules only, so the CLI, the tests and anyone else can use it.

/** Why the harness could not prepare or boot a guest. */
export type VmErrorCode =
  /** The first run builds the cache and needs root. */
  | 'VM_NOT_ROOT'
  /** apt-get/debootstrap could not reach a package mirror. */
  | 'VM_NO_PACKAGES'
  /** No QEMU with a usable vfio-user-pci device. */
  | 'VM_NO_QEMU'
  /** setup.sh failed for another reason (its output tail is in the message). */
  | 'VM_SETUP_FAILED'
  /** run-guest.sh refused its arguments (bad socket, bad option). */
  | 'VM_BAD_RUN'
  /** A script or QEMU could not be started at all. */
  | 'VM_SPAWN_FAILED';

/** An error of the guest harness; `code` names the cause, `path` the script or file involved. */
export class VmError extends Error {
  override readonly name = 'VmError';
  constructor(
    readonly code: VmErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(message);
  }
}

/** Maps setup.sh's "setup: ERROR[code]: ..." codes to ours. */
export function setupErrorCode(setupCode: string | undefined): VmErrorCode {
  switch (setupCode) {
    case 'not-root':
      return 'VM_NOT_ROOT';
    case 'no-packages':
      return 'VM_NO_PACKAGES';
    case 'no-qemu':
      return 'VM_NO_QEMU';
    default:
      return 'VM_SETUP_FAILED';
  }
}
