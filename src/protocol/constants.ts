// Index constants and flag words used across the protocol (reference §2, §3,
// §4; values from <linux/vfio.h>, <linux/kvm.h> and libvfio-user).

// ---- Region indexes (VFIO_PCI_*_REGION_INDEX) ------------------------------
/** Region indexes of a PCI device (VFIO_PCI_*_REGION_INDEX): BAR0-5, ROM, CONFIG, VGA. */
export const RegionIndex = {
  BAR0: 0,
  BAR1: 1,
  BAR2: 2,
  BAR3: 3,
  BAR4: 4,
  BAR5: 5,
  ROM: 6,
  CONFIG: 7,
  VGA: 8,
} as const;
/** VFIO_PCI_NUM_REGIONS. Indexes ≥ 9 are device-specific (need a TYPE cap). */
export const NUM_REGIONS = 9;

// ---- IRQ indexes (VFIO_PCI_*_IRQ_INDEX) ------------------------------------
/** Interrupt indexes of a PCI device (VFIO_PCI_*_IRQ_INDEX). */
export const IrqIndex = {
  INTX: 0,
  MSI: 1,
  MSIX: 2,
  /** AER error notification: TRIGGER only, count ≤ 1. */
  ERR: 3,
  /** Device-release request: TRIGGER only, count ≤ 1. */
  REQ: 4,
} as const;
/** VFIO_PCI_NUM_IRQS. */
export const NUM_IRQS = 5;

// ---- DEVICE_GET_INFO flags (VFIO_DEVICE_FLAGS_*) -----------------------------
/** GET_INFO reply flags (VFIO_DEVICE_FLAGS_*). */
export const DeviceInfoFlags = {
  RESET: 0x1,
  PCI: 0x2,
  PLATFORM: 0x4,
  AMBA: 0x8,
} as const;

// ---- DEVICE_GET_REGION_INFO flags (VFIO_REGION_INFO_FLAG_*) ------------------
/** GET_REGION_INFO reply flags (VFIO_REGION_INFO_FLAG_*). */
export const RegionInfoFlags = {
  READ: 0x1,
  WRITE: 0x2,
  MMAP: 0x4,
  CAPS: 0x8,
} as const;
/** Every GET_REGION_INFO flag defined; other bits are reserved. */
export const REGION_INFO_FLAGS_MASK = 0xf;

/** Region capability ids (VFIO_REGION_INFO_CAP_*). */
export const RegionCapId = {
  SPARSE_MMAP: 1,
  TYPE: 2,
  MSIX_MAPPABLE: 3,
} as const;

// ---- DEVICE_GET_IRQ_INFO flags (VFIO_IRQ_INFO_*) -----------------------------
/** GET_IRQ_INFO reply flags (VFIO_IRQ_INFO_*). */
export const IrqInfoFlags = {
  EVENTFD: 0x1,
  MASKABLE: 0x2,
  AUTOMASKED: 0x4,
  NORESIZE: 0x8,
} as const;

// ---- DEVICE_SET_IRQS flags (VFIO_IRQ_SET_*) ----------------------------------
/** SET_IRQS flags (VFIO_IRQ_SET_*): one DATA_* type and one ACTION_*. */
export const SetIrqsFlags = {
  DATA_NONE: 0x1,
  DATA_BOOL: 0x2,
  DATA_EVENTFD: 0x4,
  ACTION_MASK: 0x8,
  ACTION_UNMASK: 0x10,
  ACTION_TRIGGER: 0x20,
} as const;
/** The DATA_* bits of SET_IRQS flags (exactly one must be set). */
export const SET_IRQS_DATA_TYPE_MASK = 0x07;
/** The ACTION_* bits of SET_IRQS flags (exactly one must be set). */
export const SET_IRQS_ACTION_TYPE_MASK = 0x38;
/** Every SET_IRQS flag defined; other bits are reserved. */
export const SET_IRQS_FLAGS_MASK = SET_IRQS_DATA_TYPE_MASK | SET_IRQS_ACTION_TYPE_MASK;

// ---- DMA_MAP flags ----------------------------------------------------------
/** DMA_MAP flags: access the device is given to the region. */
export const DmaMapFlags = {
  READ: 0x1,
  WRITE: 0x2,
  /** libvfio-user only (not in SPEC): mmap the fd. Default when an fd is given. */
  MMAP: 0x4,
  /** libvfio-user only (not in SPEC): access the fd with pread/pwrite. */
  FILE_IO: 0x8,
} as const;
/** Every DMA_MAP flag defined; other bits are reserved. */
export const DMA_MAP_FLAGS_MASK = 0xf;

// ---- DMA_UNMAP flags --------------------------------------------------------
/** DMA_UNMAP flags. */
export const DmaUnmapFlags = {
  /** Legacy, libvfio-user only: reply carries a dirty bitmap. */
  GET_DIRTY_BITMAP: 0x1,
  /** Unmap everything (address and size must be 0). Sent by QEMU. */
  ALL: 0x2,
  /** Kernel only, not used by vfio-user. */
  VADDR: 0x4,
} as const;
/** Flags a vfio-user server accepts in DMA_UNMAP. */
export const DMA_UNMAP_FLAGS_MASK = 0x3;

// ---- DEVICE_FEATURE ---------------------------------------------------------
/** DEVICE_FEATURE flag word: the feature index (MASK) and the GET/SET/PROBE operation bits. */
export const DeviceFeatureFlags = {
  /** Low 16 bits: the feature index. */
  MASK: 0xffff,
  GET: 0x10000,
  SET: 0x20000,
  PROBE: 0x40000,
} as const;
/** Every DEVICE_FEATURE flag bit defined (feature index and operations). */
export const DEVICE_FEATURE_FLAGS_KNOWN = 0x7ffff;

/** Feature indexes (VFIO_DEVICE_FEATURE_*). */
export const DeviceFeature = {
  MIGRATION: 1,
  MIG_DEVICE_STATE: 2,
  DMA_LOGGING_START: 6,
  DMA_LOGGING_STOP: 7,
  DMA_LOGGING_REPORT: 8,
} as const;

/** `u64 flags` of the MIGRATION feature (VFIO_MIGRATION_*). */
export const MigrationFlags = {
  STOP_COPY: 0x1n,
  P2P: 0x2n,
  PRE_COPY: 0x4n,
} as const;

/** Migration v2 device states (`device_state`, u32; VFIO_DEVICE_STATE_*). */
export const DeviceState = {
  ERROR: 0,
  STOP: 1,
  RUNNING: 2,
  STOP_COPY: 3,
  RESUMING: 4,
  RUNNING_P2P: 5,
  PRE_COPY: 6,
  PRE_COPY_P2P: 7,
} as const;
/** States are 0..7; anything ≥ 8 is invalid. */
export const NUM_DEVICE_STATES = 8;

// ---- GET_REGION_IO_FDS --------------------------------------------------------
/** KVM ioeventfd flags (KVM_IOEVENTFD_FLAG_*), used in io-fd entries. */
export const KvmIoeventfdFlags = {
  DATAMATCH: 0x1,
  PIO: 0x2,
  DEASSIGN: 0x4,
  VIRTIO_CCW_NOTIFY: 0x8,
} as const;

/** io-fd entry `type`. IOEVENTFD_SHADOW exists only in libvfio-user. */
export const IoFdType = {
  IOEVENTFD: 0,
  IOREGIONFD: 1,
  IOEVENTFD_SHADOW: 2,
} as const;

// ---- Limits -------------------------------------------------------------------
/** Largest fd count libvfio-user accepts for max_msg_fds. */
export const MAX_MSG_FDS_LIMIT = 1024;
