//! Per-CPU descriptor tables: a GDT with a 64-bit code segment, a data segment and a
//! TSS whose interrupt stack table gives every exception and interrupt a known-good stack
//! (the prebuilt `core` uses the red zone, so nothing may be pushed onto an interrupted
//! stack). One IDT is shared by all CPUs; see `interrupts.rs`. The tables of every CPU
//! are statics, indexed by the CPU's partition index.

use core::mem::size_of;

/// Host code segment selector.
pub const KERNEL_CS: u16 = 0x08;
/// Host data/stack segment selector.
pub const KERNEL_DS: u16 = 0x10;
/// Host task register selector.
pub const KERNEL_TR: u16 = 0x18;

/// Size of each interrupt stack.
pub const IST_STACK_SIZE: usize = 16 * 1024;
/// Number of interrupt stacks per CPU (double fault, NMI, machine check, other
/// exceptions, interrupts).
pub const IST_COUNT: usize = 5;

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

/// Descriptor tables of one CPU. Lives for ever at a fixed address (GDTR and TR
/// point into it).
#[repr(C, align(16))]
#[derive(Debug)]
struct CpuTables {
    gdt: [u64; 5],
    tss: Tss,
    ist_stacks: [[u8; IST_STACK_SIZE]; IST_COUNT],
}

/// Pseudo-descriptor for LGDT/LIDT.
#[repr(C, packed(2))]
pub struct DescriptorPointer {
    pub limit: u16,
    pub base: u64,
}

impl CpuTables {
    /// All-zero tables, for the bootstrap CPU's static copy; call `init` before use.
    const fn zeroed() -> Self {
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
            ist_stacks: [[0; IST_STACK_SIZE]; IST_COUNT],
        }
    }

    /// Fills the GDT and TSS for this block's own address. Must be called with `self`
    /// at its final location.
    fn init(&mut self) {
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
    unsafe fn load(&self) {
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
}

/// The descriptor tables of every CPU the kernel can run on.
struct AllTables([core::cell::UnsafeCell<CpuTables>; crate::MAX_CPUS]);
// SAFETY: entry `i` is only touched by CPU `i`, once, in `load_for_cpu`.
unsafe impl Sync for AllTables {}
static TABLES: AllTables =
    AllTables([const { core::cell::UnsafeCell::new(CpuTables::zeroed()) }; crate::MAX_CPUS]);

/// Fills and loads CPU `index`'s GDT and TSS. Call once per CPU, on that CPU.
pub fn load_for_cpu(index: usize) {
    let Some(cell) = TABLES.0.get(index) else {
        return;
    };
    // SAFETY: each CPU calls this once for its own index (the boot paths guarantee distinct
    // indices), so nobody else holds a reference to this entry; it is a static.
    let tables = unsafe { &mut *cell.get() };
    tables.init();
    // SAFETY: `init` ran and the tables are static.
    unsafe { tables.load() };
}
