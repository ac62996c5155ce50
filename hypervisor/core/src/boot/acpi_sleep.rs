//! Finding the S5 (soft-off) sleep type in a DSDT without an AML interpreter.
//!
//! Powering off through ACPI needs SLP_TYPa from the `\_S5` package. A full AML
//! interpreter is far more than the hypervisor needs for this one value; like most
//! small kernels we look for the `_S5_` name object and decode the first element of its
//! package (SDM-free; ACPI 6.5, 19.6.102 and 20.2 for the encodings). Anything
//! unexpected returns `None` and the caller falls back to halting.

const NAME_OP: u8 = 0x08;
const PACKAGE_OP: u8 = 0x12;
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const BYTE_PREFIX: u8 = 0x0a;

/// SLP_TYPa of `\_S5` in the AML byte stream `aml` (a DSDT body, header included or
/// not).
pub fn s5_sleep_type(aml: &[u8]) -> Option<u8> {
    let pos = aml.windows(4).position(|w| w == b"_S5_")?;
    // NameOp, optionally a root prefix '\', then the name.
    let before = aml.get(..pos)?;
    let named = matches!(before.last(), Some(&NAME_OP))
        || (before.len() >= 2
            && before[before.len() - 1] == b'\\'
            && before[before.len() - 2] == NAME_OP);
    if !named {
        return None;
    }
    let mut rest = aml.get(pos + 4..)?.iter().copied();
    if rest.next()? != PACKAGE_OP {
        return None;
    }
    // PkgLength: bits 7:6 of the lead byte give the number of following bytes.
    let lead = rest.next()?;
    for _ in 0..(lead >> 6) {
        rest.next()?;
    }
    let _num_elements = rest.next()?;
    match rest.next()? {
        ZERO_OP => Some(0),
        ONE_OP => Some(1),
        BYTE_PREFIX => rest.next(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_style_zero_package() {
        let aml = [
            0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(s5_sleep_type(&aml[1..]), Some(0));
    }

    #[test]
    fn byte_prefixed_value_with_root_prefix() {
        let aml = [
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x0a, 0x04, 0x0a, 0x07, 0x0a, 0x07, 0, 0,
        ];
        assert_eq!(s5_sleep_type(&aml), Some(7));
    }

    #[test]
    fn two_byte_pkglength() {
        let aml = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x40, 0x01, 0x02, 0x01, 0x01,
        ];
        assert_eq!(s5_sleep_type(&aml), Some(1));
    }

    #[test]
    fn garbage_and_truncation_give_none() {
        assert_eq!(s5_sleep_type(b""), None);
        assert_eq!(s5_sleep_type(b"_S5_"), None);
        assert_eq!(s5_sleep_type(&[0x08, b'_', b'S', b'5', b'_', 0x12]), None);
        assert_eq!(
            s5_sleep_type(&[0x08, b'_', b'S', b'5', b'_', 0x99, 0, 0, 0]),
            None
        );
        for n in 0..12 {
            let aml = [
                0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x0a, 0x05, 0x00, 0x00,
            ];
            let _ = s5_sleep_type(&aml[..n]);
        }
    }
}
