//! Output bookkeeping for the one-pass rewrite: everything between matches is copied from the
//! input as it stands, each match is replaced by its mask, and `out_pos` (an absolute body
//! offset) says how far the output has got. Matches are found in order and never overlap, so the
//! output is produced strictly left to right.

use super::mask::{self, MaskSpec};

#[derive(Debug, Default)]
pub(crate) struct Writer {
    /// Whether output is produced at all (`action: redact`).
    pub enabled: bool,
    /// Absolute offset of the first input byte not yet accounted for in the output.
    pub out_pos: u64,
    /// Whether any mask has been written.
    pub changed: bool,
}

fn rel(abs: u64, base: u64) -> usize {
    usize::try_from(abs.saturating_sub(base)).unwrap_or(usize::MAX)
}

impl Writer {
    /// Copies the input from `out_pos` up to the absolute offset `to` unchanged.
    pub(crate) fn copy_to(&mut self, buf: &[u8], base: u64, to: u64, out: &mut Vec<u8>) {
        if !self.enabled || to <= self.out_pos {
            return;
        }
        if let Some(raw) = buf.get(rel(self.out_pos, base)..rel(to, base)) {
            out.extend_from_slice(raw);
        }
        self.out_pos = to;
    }

    /// Replaces the input `[start, end)` (absolute) by its mask.
    pub(crate) fn replace(
        &mut self,
        buf: &[u8],
        base: u64,
        start: u64,
        end: u64,
        spec: &MaskSpec<'_>,
        out: &mut Vec<u8>,
    ) {
        if !self.enabled {
            return;
        }
        self.copy_to(buf, base, start, out);
        let value = buf.get(rel(start, base)..rel(end, base)).unwrap_or(&[]);
        mask::render(spec, value, out);
        self.out_pos = end;
        self.changed = true;
    }

    /// Ends a dropped region (its bytes were never copied) with its mask.
    pub(crate) fn close_dropped(
        &mut self,
        end: u64,
        spec: &MaskSpec<'_>,
        mac: Option<&[u8; 32]>,
        out: &mut Vec<u8>,
    ) {
        if !self.enabled {
            return;
        }
        mask::render_streamed(spec, mac, out);
        self.out_pos = self.out_pos.max(end);
        self.changed = true;
    }

    /// Forgets input up to `to` without copying it (inside a dropped region).
    pub(crate) fn drop_to(&mut self, to: u64) {
        self.out_pos = self.out_pos.max(to);
    }
}
