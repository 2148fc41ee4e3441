// Linux errno values used on the wire. vfio-user carries the host's errno in
// the header's error field; every supported host is Linux, so these are fixed.
/** Linux errno values by name, as carried in the header's `error` field. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  ENOSYS: 38,
  ENOTSUP: 95,
  EPROTO: 71,
  EOVERFLOW: 75,
  EMSGSIZE: 90,
  ECONNRESET: 104,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECANCELED: 125,
  ENOTTY: 25,
} as const;

/** A name in the Errno table, e.g. `EINVAL`. */
export type ErrnoName = keyof typeof Errno;

const byNumber = new Map<number, ErrnoName>(
  (Object.entries(Errno) as [ErrnoName, number][]).map(([k, v]) => [v, k]),
);

/** Name of an errno value, or `E<number>` when it is not in the table. */
export function errnoName(errno: number): string {
  return byNumber.get(errno) ?? `E${errno}`;
}
