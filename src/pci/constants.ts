// Register offsets, bit masks and capability IDs of a type-0 PCI header and
// the capabilities this package models (PCI Local Bus 3.0, PCI PM 1.2,
// PCI Express Base 4.0). Pure data, shared by the model and the decoder.

/** Size of conventional PCI config space in bytes. */
export const PCI_CONFIG_SIZE = 256;
/** Size of PCI Express config space in bytes (extended capabilities start at 0x100). */
export const PCIE_CONFIG_SIZE = 4096;

/** Config offset of the Vendor ID (16 bits). */
export const PCI_VENDOR_ID = 0x00;
/** Config offset of the Device ID (16 bits). */
export const PCI_DEVICE_ID = 0x02;
/** Config offset of the Command register (16 bits). */
export const PCI_COMMAND = 0x04;
/** Config offset of the Status register (16 bits). */
export const PCI_STATUS = 0x06;
/** Config offset of the Revision ID (8 bits). */
export const PCI_REVISION_ID = 0x08;
/** Config offset of the Programming Interface byte of the class code. */
export const PCI_CLASS_PROG = 0x09;
/** Config offset of the sub-class and base class (16 bits: sub-class low, base class high). */
export const PCI_CLASS_DEVICE = 0x0a;
/** Config offset of the Cache Line Size register. */
export const PCI_CACHE_LINE_SIZE = 0x0c;
/** Config offset of the Latency Timer register. */
export const PCI_LATENCY_TIMER = 0x0d;
/** Config offset of the Header Type register (0 for the type-0 header modelled here). */
export const PCI_HEADER_TYPE = 0x0e;
/** Config offset of the BIST register. */
export const PCI_BIST = 0x0f;
/** Config offset of BAR0; BARn is at this + 4 * n. */
export const PCI_BASE_ADDRESS_0 = 0x10;
/** Config offset of the CardBus CIS Pointer. */
export const PCI_CARDBUS_CIS = 0x28;
/** Config offset of the Subsystem Vendor ID (16 bits). */
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
/** Config offset of the Subsystem ID (16 bits). */
export const PCI_SUBSYSTEM_ID = 0x2e;
/** Config offset of the Expansion ROM Base Address register. */
export const PCI_ROM_ADDRESS = 0x30;
/** Config offset of the Capabilities Pointer (first capability). */
export const PCI_CAPABILITY_LIST = 0x34;
/** Config offset of the Interrupt Line register (written by firmware, unused by the device). */
export const PCI_INTERRUPT_LINE = 0x3c;
/** Config offset of the Interrupt Pin register (1 = INTA#, 0 = no INTx). */
export const PCI_INTERRUPT_PIN = 0x3d;
/** Config offset of the Min_Gnt register. */
export const PCI_MIN_GNT = 0x3e;
/** Config offset of the Max_Lat register. */
export const PCI_MAX_LAT = 0x3f;
/** First byte after the standard header: where capabilities may start. */
export const PCI_STD_HEADER_SIZE = 0x40;
/** First byte of PCI Express extended configuration space. */
export const PCI_EXT_CAP_START = 0x100;

// Command register bits.
/** Command: I/O Space Enable. */
export const PCI_COMMAND_IO = 0x0001;
/** Command: Memory Space Enable. */
export const PCI_COMMAND_MEMORY = 0x0002;
/** Command: Bus Master Enable (the device may DMA and signal MSI/MSI-X). */
export const PCI_COMMAND_MASTER = 0x0004;
/** Command: Special Cycles (hardwired to 0 here). */
export const PCI_COMMAND_SPECIAL = 0x0008;
/** Command: Memory Write and Invalidate Enable. */
export const PCI_COMMAND_INVALIDATE = 0x0010;
/** Command: VGA Palette Snoop. */
export const PCI_COMMAND_VGA_PALETTE = 0x0020;
/** Command: Parity Error Response. */
export const PCI_COMMAND_PARITY = 0x0040;
/** Command: Stepping Control (hardwired to 0 here). */
export const PCI_COMMAND_WAIT = 0x0080;
/** Command: SERR# Enable. */
export const PCI_COMMAND_SERR = 0x0100;
/** Command: Fast Back-to-Back Enable (hardwired to 0 here). */
export const PCI_COMMAND_FAST_BACK = 0x0200;
/** Command: Interrupt Disable (the device must not assert INTx). */
export const PCI_COMMAND_INTX_DISABLE = 0x0400;
/** Command bits a guest can change; every other bit reads 0. */
export const PCI_COMMAND_WRITABLE =
  PCI_COMMAND_IO |
  PCI_COMMAND_MEMORY |
  PCI_COMMAND_MASTER |
  PCI_COMMAND_INVALIDATE |
  PCI_COMMAND_VGA_PALETTE |
  PCI_COMMAND_PARITY |
  PCI_COMMAND_SERR |
  PCI_COMMAND_INTX_DISABLE;

// Status register bits.
/** Status: Interrupt Status (INTx asserted, whether or not it is disabled). */
export const PCI_STATUS_INTERRUPT = 0x0008;
/** Status: Capabilities List (the Capabilities Pointer is valid). */
export const PCI_STATUS_CAP_LIST = 0x0010;
/** Status: 66 MHz Capable. */
export const PCI_STATUS_66MHZ = 0x0020;
/** Status: User Definable Features (obsolete). */
export const PCI_STATUS_UDF = 0x0040;
/** Status: Fast Back-to-Back Transactions Capable. */
export const PCI_STATUS_FAST_BACK = 0x0080;
/** Status: Master Data Parity Error (RW1C). */
export const PCI_STATUS_PARITY = 0x0100;
/** Status: DEVSEL timing field. */
export const PCI_STATUS_DEVSEL_MASK = 0x0600;
/** Status: Signaled Target Abort (RW1C). */
export const PCI_STATUS_SIG_TARGET_ABORT = 0x0800;
/** Status: Received Target Abort (RW1C). */
export const PCI_STATUS_REC_TARGET_ABORT = 0x1000;
/** Status: Received Master Abort (RW1C). */
export const PCI_STATUS_REC_MASTER_ABORT = 0x2000;
/** Status: Signaled System Error (RW1C). */
export const PCI_STATUS_SIG_SYSTEM_ERROR = 0x4000;
/** Status: Detected Parity Error (RW1C). */
export const PCI_STATUS_DETECTED_PARITY = 0x8000;
/** Status bits that are cleared by writing 1 (RW1C). */
export const PCI_STATUS_W1C =
  PCI_STATUS_PARITY |
  PCI_STATUS_SIG_TARGET_ABORT |
  PCI_STATUS_REC_TARGET_ABORT |
  PCI_STATUS_REC_MASTER_ABORT |
  PCI_STATUS_SIG_SYSTEM_ERROR |
  PCI_STATUS_DETECTED_PARITY;

// BAR type bits.
/** BAR bit 0: an I/O BAR (else memory). */
export const PCI_BAR_SPACE_IO = 0x1;
/** Memory BAR type field value for a 64-bit BAR (bits 2:1 = 10b). */
export const PCI_BAR_MEM_TYPE_64 = 0x4;
/** Memory BAR bit 3: prefetchable. */
export const PCI_BAR_MEM_PREFETCH = 0x8;
/** Expansion ROM BAR bit 0: address decode enable. */
export const PCI_ROM_ENABLE = 0x1;
/** Address bits of the expansion ROM BAR (31:11). */
export const PCI_ROM_ADDRESS_MASK = 0xfffff800;

// Capability IDs.
/** Capability ID: PCI Power Management. */
export const PCI_CAP_ID_PM = 0x01;
/** Capability ID: MSI. */
export const PCI_CAP_ID_MSI = 0x05;
/** Capability ID: vendor specific. */
export const PCI_CAP_ID_VNDR = 0x09;
/** Capability ID: PCI Express. */
export const PCI_CAP_ID_EXP = 0x10;
/** Capability ID: MSI-X. */
export const PCI_CAP_ID_MSIX = 0x11;

// Extended capability IDs.
/** Extended capability ID: Device Serial Number. */
export const PCI_EXT_CAP_ID_DSN = 0x03;
/** Extended capability ID: vendor specific (VSEC). */
export const PCI_EXT_CAP_ID_VNDR = 0x0b;

// Power management.
/** PM capability: offset of the Power Management Capabilities register. */
export const PCI_PM_PMC = 2;
/** PM capability: offset of PMCSR (control/status). */
export const PCI_PM_CTRL = 4;
/** PM capability: size in bytes. */
export const PCI_PM_SIZEOF = 8;
/** PMCSR: PowerState field (0 = D0 ... 3 = D3hot). */
export const PCI_PM_CTRL_STATE_MASK = 0x0003;
/** PMCSR: No_Soft_Reset (D3hot to D0 keeps the device state). */
export const PCI_PM_CTRL_NO_SOFT_RESET = 0x0008;
/** PMCSR: PME_En. */
export const PCI_PM_CTRL_PME_ENABLE = 0x0100;
/** PMCSR: PME_Status (RW1C). */
export const PCI_PM_CTRL_PME_STATUS = 0x8000;

// MSI.
/** MSI capability: offset of Message Control. */
export const PCI_MSI_FLAGS = 2;
/** MSI Message Control: MSI Enable. */
export const PCI_MSI_FLAGS_ENABLE = 0x0001;
/** MSI Message Control: Multiple Message Capable (log2 of the vectors supported). */
export const PCI_MSI_FLAGS_QMASK = 0x000e;
/** MSI Message Control: Multiple Message Enable (log2 of the vectors enabled). */
export const PCI_MSI_FLAGS_QSIZE = 0x0070;
/** MSI Message Control: 64-bit address capable. */
export const PCI_MSI_FLAGS_64BIT = 0x0080;
/** MSI Message Control: per-vector masking capable. */
export const PCI_MSI_FLAGS_MASKBIT = 0x0100;
/** MSI capability: offset of Message Address (low dword). */
export const PCI_MSI_ADDRESS_LO = 4;

// MSI-X.
/** MSI-X capability: offset of Message Control. */
export const PCI_MSIX_FLAGS = 2;
/** MSI-X Message Control: Table Size field (entries - 1). */
export const PCI_MSIX_FLAGS_QSIZE = 0x07ff;
/** MSI-X Message Control: Function Mask. */
export const PCI_MSIX_FLAGS_MASKALL = 0x4000;
/** MSI-X Message Control: MSI-X Enable. */
export const PCI_MSIX_FLAGS_ENABLE = 0x8000;
/** MSI-X capability: offset of the Table Offset/BIR dword. */
export const PCI_MSIX_TABLE = 4;
/** MSI-X capability: offset of the PBA Offset/BIR dword. */
export const PCI_MSIX_PBA = 8;
/** MSI-X capability: size in bytes. */
export const PCI_MSIX_SIZEOF = 12;
/** Bytes per MSI-X table entry (address, data, vector control). */
export const PCI_MSIX_ENTRY_SIZE = 16;
/** MSI-X table entry Vector Control: Mask Bit. */
export const PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x1;

// PCI Express capability (version 2 layout).
/** PCIe capability: offset of the PCI Express Capabilities register. */
export const PCI_EXP_FLAGS = 0x02;
/** PCIe capability: offset of Device Capabilities. */
export const PCI_EXP_DEVCAP = 0x04;
/** PCIe capability: offset of Device Control. */
export const PCI_EXP_DEVCTL = 0x08;
/** PCIe capability: offset of Device Status. */
export const PCI_EXP_DEVSTA = 0x0a;
/** PCIe capability: offset of Link Capabilities. */
export const PCI_EXP_LNKCAP = 0x0c;
/** PCIe capability: offset of Link Control. */
export const PCI_EXP_LNKCTL = 0x10;
/** PCIe capability: offset of Link Status. */
export const PCI_EXP_LNKSTA = 0x12;
/** PCIe capability: offset of Device Capabilities 2. */
export const PCI_EXP_DEVCAP2 = 0x24;
/** PCIe capability: offset of Device Control 2. */
export const PCI_EXP_DEVCTL2 = 0x28;
/** PCIe capability: offset of Link Capabilities 2. */
export const PCI_EXP_LNKCAP2 = 0x2c;
/** PCIe capability: offset of Link Control 2. */
export const PCI_EXP_LNKCTL2 = 0x30;
/** PCIe capability: size in bytes (version 2 layout, endpoint). */
export const PCI_EXP_SIZEOF = 0x3c;
/** Device Capabilities: Function Level Reset capable. */
export const PCI_EXP_DEVCAP_FLR = 0x10000000;
/** Device Capabilities: Role-Based Error Reporting. */
export const PCI_EXP_DEVCAP_RBER = 0x00008000;
/** Device Capabilities: Extended Tag Field supported. */
export const PCI_EXP_DEVCAP_EXT_TAG = 0x00000020;
/** Device Control: Initiate Function Level Reset. */
export const PCI_EXP_DEVCTL_BCR_FLR = 0x8000;

/** Names lspci uses for capability IDs (subset). */
export const CAP_NAMES: Readonly<Record<number, string>> = {
  0x01: 'Power Management',
  0x02: 'AGP',
  0x03: 'Vital Product Data',
  0x04: 'Slot ID',
  0x05: 'MSI',
  0x06: 'CompactPCI hot-swap',
  0x07: 'PCI-X',
  0x08: 'HyperTransport',
  0x09: 'Vendor Specific Information',
  0x0a: 'Debug port',
  0x0b: 'CompactPCI central resource control',
  0x0c: 'Hot-plug capable',
  0x0d: 'Subsystem',
  0x0e: 'AGP3',
  0x0f: 'Secure device',
  0x10: 'Express',
  0x11: 'MSI-X',
  0x12: 'SATA HBA',
  0x13: 'PCI Advanced Features',
  0x14: 'Enhanced Allocation',
  0x15: 'Flattening Portal Bridge',
};

/** Names lspci uses for extended capability IDs (subset). */
export const EXT_CAP_NAMES: Readonly<Record<number, string>> = {
  0x01: 'Advanced Error Reporting',
  0x02: 'Virtual Channel',
  0x03: 'Device Serial Number',
  0x04: 'Power Budgeting',
  0x0b: 'Vendor Specific Information',
  0x0d: 'Access Control Services',
  0x0e: 'Alternative Routing-ID Interpretation (ARI)',
  0x10: 'Single Root I/O Virtualization (SR-IOV)',
  0x15: 'Resizable BAR',
  0x18: 'Latency Tolerance Reporting',
  0x1e: 'L1 PM Substates',
};
