//! A fixed-capacity list with no allocation: the storage behind every list in the config model.
//! Pushing past the capacity is an error, never a panic; the unused tail is always `T::default()`,
//! so two lists with the same items compare equal.

use core::fmt;

/// A list of at most `N` items stored inline.
#[derive(Clone, Copy)]
pub(crate) struct FixedVec<T: Copy, const N: usize> {
    items: [T; N],
    len: usize,
}

/// The list is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

impl<T: Copy + Default, const N: usize> FixedVec<T, N> {
    /// An empty list.
    pub fn new() -> Self {
        Self {
            items: [T::default(); N],
            len: 0,
        }
    }
}

impl<T: Copy + Default, const N: usize> Default for FixedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy, const N: usize> FixedVec<T, N> {
    /// Appends `item`, or reports that the list is full.
    pub fn push(&mut self, item: T) -> Result<(), Full> {
        let slot = self.items.get_mut(self.len).ok_or(Full)?;
        *slot = item;
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    /// The items, in insertion order.
    pub fn as_slice(&self) -> &[T] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// The items, mutably.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        self.items.get_mut(..self.len).unwrap_or(&mut [])
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }
}

impl<T: Copy + PartialEq, const N: usize> PartialEq for FixedVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy + Eq, const N: usize> Eq for FixedVec<T, N> {}

impl<T: Copy + fmt::Debug, const N: usize> fmt::Debug for FixedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}
