//! A fixed-capacity list for the tables the hypervisor fills at boot (CPUs, IOAPICs,
//! RAM ranges, modules): no allocation, and a full table is a value the caller sees,
//! never a panic or a silent overwrite.

/// Up to `N` items of `T`, in insertion order.
#[derive(Debug, Clone, Copy)]
pub struct FixedList<T: Copy, const N: usize> {
    items: [T; N],
    len: usize,
}

/// The list was full; the item was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<T: Copy + Default, const N: usize> Default for FixedList<T, N> {
    fn default() -> Self {
        Self {
            items: [T::default(); N],
            len: 0,
        }
    }
}

impl<T: Copy + Default, const N: usize> FixedList<T, N> {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `item`, or returns `Full`.
    pub fn push(&mut self, item: T) -> Result<(), Full> {
        let slot = self.items.get_mut(self.len).ok_or(Full)?;
        *slot = item;
        self.len += 1;
        Ok(())
    }

    /// The items so far.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    /// The items so far, mutable (for sorting).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_up_then_refuses() {
        let mut l = FixedList::<u32, 2>::new();
        assert_eq!(l.push(7), Ok(()));
        assert_eq!(l.push(3), Ok(()));
        assert_eq!(l.push(9), Err(Full));
        l.as_mut_slice().sort_unstable();
        assert_eq!(l.as_slice(), &[3, 7]);
    }
}
