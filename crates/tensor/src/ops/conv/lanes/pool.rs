//! Interleaved buffers kept between calls. A training step interleaves the same few shapes
//! every time, and a fresh zeroed buffer costs a page fault per 4 KiB: before the pool,
//! `memset` and the kernel's `clear_page` took a tenth of a training step.
//!
//! A buffer is kept with its layout (what it holds and the layer's `LaneDims`) and handed
//! out again only for that layout. Its padding is still zero then, because no user writes
//! there; every other value is as the last user left it, so a user must overwrite all of
//! them (the interleaving and the forward kernel do) or clear the buffer (the input
//! gradient, which is added into).

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use super::LaneDims;

/// What a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The interleaved input, `[groups, C, HP, WP]` vectors.
    Input,
    /// The forward result, rows by channel.
    Output,
    /// The interleaved output gradient, rows by position.
    OutputGrad,
    /// The input gradient being scattered, `[groups, C, HP, WP]` vectors.
    InputGrad,
}

/// Buffers given back, oldest first.
static KEPT: Mutex<Vec<(Role, LaneDims, Vec<f32>)>> = Mutex::new(Vec::new());

/// The most buffers kept: a training step uses seven (two layers), an evaluation at
/// another batch size four more.
const MAX_KEPT: usize = 16;

/// A buffer on loan from the pool; it goes back when dropped.
pub struct Pooled {
    role: Role,
    dims: LaneDims,
    data: Vec<f32>,
}

impl Pooled {
    /// A buffer of `len` values for `role` at `dims`: a kept one of that layout (padding
    /// zero, the rest unspecified), else fresh zeros.
    pub(super) fn take(role: Role, dims: LaneDims, len: usize) -> Pooled {
        let kept = {
            let mut kept = KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            kept.iter()
                .position(|(r, d, data)| *r == role && *d == dims && data.len() == len)
                .map(|i| kept.remove(i).2)
        };
        Pooled {
            role,
            dims,
            data: kept.unwrap_or_else(|| vec![0.0; len]),
        }
    }
}

impl Deref for Pooled {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.data
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        let mut kept = KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.push((self.role, self.dims, data));
        if kept.len() > MAX_KEPT {
            kept.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::{Conv2dConfig, ConvDims};

    fn dims(n: usize) -> LaneDims {
        LaneDims::new(ConvDims::new(
            &[n, 1, 6, 6],
            &[2, 1, 3, 3],
            Conv2dConfig::default(),
        ))
    }

    #[test]
    fn a_buffer_is_handed_out_again_only_for_its_own_layout() {
        let mut a = Pooled::take(Role::Output, dims(3), 10);
        a[0] = 7.0;
        drop(a);
        // Another role or other dims get fresh zeros.
        assert_eq!(Pooled::take(Role::Input, dims(3), 10)[0], 0.0);
        assert_eq!(Pooled::take(Role::Output, dims(4), 10)[0], 0.0);
        // The same layout gets the buffer back as it was left.
        assert_eq!(Pooled::take(Role::Output, dims(3), 10)[0], 7.0);
    }
}
