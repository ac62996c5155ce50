//! How a guest recognises Bulkhead: the hypervisor CPUID leaf and its signature.

/// The first hypervisor CPUID leaf: EAX = the highest hypervisor leaf, EBX:ECX:EDX =
/// [`SIGNATURE`].
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// The signature in EBX, ECX and EDX of [`HYPERVISOR_LEAF`], in that order.
pub const SIGNATURE: &[u8; 12] = b"BulkheadHV\0\0";

/// Whether the registers of [`HYPERVISOR_LEAF`] carry [`SIGNATURE`].
pub fn is_bulkhead(ebx: u32, ecx: u32, edx: u32) -> bool {
    let mut seen = [0u8; 12];
    seen[0..4].copy_from_slice(&ebx.to_le_bytes());
    seen[4..8].copy_from_slice(&ecx.to_le_bytes());
    seen[8..12].copy_from_slice(&edx.to_le_bytes());
    &seen == SIGNATURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_read_from_ebx_ecx_edx() {
        let word = |i: usize| u32::from_le_bytes(SIGNATURE[i..i + 4].try_into().unwrap());
        assert!(is_bulkhead(word(0), word(4), word(8)));
        assert!(!is_bulkhead(word(4), word(0), word(8)));
    }
}
