// vfio-user command numbers (reference §2.0). The `command` header field.

/** vfio-user command numbers by name (VFIO_USER_<NAME>), the header's `command` field. */
export const Command = {
  VERSION: 1,
  DMA_MAP: 2,
  DMA_UNMAP: 3,
  DEVICE_GET_INFO: 4,
  DEVICE_GET_REGION_INFO: 5,
  DEVICE_GET_REGION_IO_FDS: 6,
  DEVICE_GET_IRQ_INFO: 7,
  DEVICE_SET_IRQS: 8,
  REGION_READ: 9,
  REGION_WRITE: 10,
  /** Server → client. */
  DMA_READ: 11,
  /** Server → client. */
  DMA_WRITE: 12,
  DEVICE_RESET: 13,
  /**
   * OBSOLETE (migration v1 dirty tracking, removed from libvfio-user in 2023).
   * Reserved: a server answers it with EINVAL. Never send it.
   */
  DIRTY_PAGES: 14,
  REGION_WRITE_MULTI: 15,
  DEVICE_FEATURE: 16,
  MIG_DATA_READ: 17,
  MIG_DATA_WRITE: 18,
} as const;

/** A command's name, e.g. `REGION_READ`. */
export type CommandName = keyof typeof Command;
/** A defined command number. */
export type CommandNumber = (typeof Command)[CommandName];

/** Command numbers that are reserved (obsolete) and must be refused. */
export const RESERVED_COMMANDS: ReadonlySet<number> = new Set([Command.DIRTY_PAGES]);

/** Commands the server sends to the client. */
export const SERVER_TO_CLIENT_COMMANDS: ReadonlySet<number> = new Set([Command.DMA_READ, Command.DMA_WRITE]);

/** Lowest command number defined. */
export const COMMAND_MIN = 1;
/** Highest command number defined (MIG_DATA_WRITE). */
export const COMMAND_MAX = 18;

const names = new Map<number, CommandName>(
  (Object.entries(Command) as [CommandName, number][]).map(([k, v]) => [v, k]),
);

/** `VFIO_USER_<NAME>` for a known number, `UNKNOWN(<n>)` otherwise. */
export function commandName(n: number): string {
  const k = names.get(n);
  return k === undefined ? `UNKNOWN(${n})` : `VFIO_USER_${k}`;
}

/** True for 1..18 except the reserved (obsolete) numbers. */
export function isCurrentCommand(n: number): n is CommandNumber {
  return names.has(n) && !RESERVED_COMMANDS.has(n);
}

/** True for the client → server commands a server should accept. */
export function isClientToServerCommand(n: number): boolean {
  return isCurrentCommand(n) && !SERVER_TO_CLIENT_COMMANDS.has(n);
}
