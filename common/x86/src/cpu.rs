//! Per-CPU descriptor tables: a GDT with a 64-bit code segment, a data segment and a
//! TSS whose interrupt stack table gives every exception (and interrupt) a known-good stack
//! (the prebuilt `core` uses the red zone, so nothing may be pushed onto an interrupted
//! stack). The number of interrupt stacks is the image's choice; where each CPU's tables live
//! is too. One IDT is shared by all CPUs of an image; see `idt.rs`.

use core::mem::size_of;

/// Host code segment selector.
pub const KERNEL_CS: u16 = 0x08;
/// Host data/stack segment selector.
pub const KERNEL_DS: u16 = 0x10;
/// Host task register selector.
pub const KERNEL_TR: u16 = 0x18;

/// Size of each interrupt stack.
pub const IST_STACK_SIZE: usize = 16 * 1024;
/// Interrupt stack slots (1-based) the exception gates of [`crate::idt::Idt`] use: double
/// fault, NMI, machine check, and every other exception. An image's [`CpuTables`] has at
/// least [`IST_EXCEPTIONS`] stacks; further ones are the image's (interrupts).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;
pub const IST_OTHER_EXCEPTION: u8 = 4;
/// Interrupt stacks the exception gates need.
pub const IST_EXCEPTIONS: usize = 4;

/// The 64-bit task-state segment (SDM Vol. 3A, 8.7).
#[repr(C, packed(4))]
#[derive(Debug, Clone, Copy, Default)]
pub struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

const _: () = assert!(size_of::<Tss>() == 104);

/// Descriptor tables of one CPU, with `IST` interrupt stacks (at least [`IST_EXCEPTIONS`],
/// at most 7). Lives for ever at a fixed address (GDTR and TR point into it).
#[repr(C, align(16))]
#[derive(Debug)]
pub struct CpuTables<const IST: usize> {
    gdt: [u64; 5],
    tss: Tss,
    ist_stacks: [[u8; IST_STACK_SIZE]; IST],
}

/// Pseudo-descriptor for LGDT/LIDT.
#[repr(C, packed(2))]
#[derive(Debug, Clone, Copy)]
pub struct DescriptorPointer {
    pub limit: u16,
    pub base: u64,
}

impl<const IST: usize> CpuTables<IST> {
    const VALID_IST: () = assert!(IST >= IST_EXCEPTIONS && IST <= 7);

    /// All-zero tables, for static copies; call `init` before use.
    pub const fn zeroed() -> Self {
        let () = Self::VALID_IST;
        Self {
            gdt: [0; 5],
            tss: Tss {
                reserved0: 0,
                rsp: [0; 3],
                reserved1: 0,
                ist: [0; 7],
                reserved2: 0,
                reserved3: 0,
                iomap_base: 0,
            },
            ist_stacks: [[0; IST_STACK_SIZE]; IST],
        }
    }

    /// Fills the GDT and TSS for this block's own address. Must be called with `self`
    /// at its final location.
    pub fn init(&mut self) {
        let mut tss = Tss {
            iomap_base: size_of::<Tss>() as u16,
            ..Tss::default()
        };
        for (i, stack) in self.ist_stacks.iter().enumerate() {
            // Stacks grow down; keep 16-byte alignment.
            tss.ist[i] = (stack.as_ptr() as u64 + IST_STACK_SIZE as u64) & !0xf;
        }
        self.tss = tss;
        let tss_base = &raw const self.tss as u64;
        let tss_limit = (size_of::<Tss>() - 1) as u64;
        self.gdt = [
            0,
            0x00af_9a00_0000_ffff, // 64-bit code, DPL 0
            0x00cf_9200_0000_ffff, // data, DPL 0
            // 64-bit available TSS (type 9), present.
            (tss_limit & 0xffff)
                | ((tss_base & 0xff_ffff) << 16)
                | (0x89 << 40)
                | (((tss_limit >> 16) & 0xf) << 48)
                | (((tss_base >> 24) & 0xff) << 56),
            tss_base >> 32,
        ];
    }

    /// Loads GDTR, reloads the segment registers and loads TR on this CPU.
    ///
    /// # Safety
    /// `self` must stay at this address for as long as the CPU runs, and `init` must
    /// have been called.
    pub unsafe fn load(&self) {
        let gdtr = DescriptorPointer {
            limit: (size_of::<[u64; 5]>() - 1) as u16,
            base: self.gdt.as_ptr() as u64,
        };
        // SAFETY: the GDT is valid (init) and outlives the CPU (caller); the far return
        // reloads CS with the code descriptor, the other selectors with the data one.
        unsafe {
            core::arch::asm!(
                "lgdt [{gdtr}]",
                "push {cs}",
                "lea {tmp}, [rip + 2f]",
                "push {tmp}",
                "retfq",
                "2:",
                "mov ds, {ds:x}",
                "mov es, {ds:x}",
                "mov ss, {ds:x}",
                "ltr {tr:x}",
                gdtr = in(reg) &gdtr,
                cs = in(reg) u64::from(KERNEL_CS),
                ds = in(reg) u64::from(KERNEL_DS),
                tr = in(reg) u64::from(KERNEL_TR),
                tmp = out(reg) _,
            );
        }
    }

    /// Base address of the TSS (the VMCS host-state area needs it).
    pub fn tss_base(&self) -> u64 {
        &raw const self.tss as u64
    }

    /// Base address of the GDT (the VMCS host-state area needs it).
    pub fn gdt_base(&self) -> u64 {
        self.gdt.as_ptr() as u64
    }
}
