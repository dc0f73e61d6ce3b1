//! The varints the store's compact values are made of: LEB128 for counts
//! and distances, zig-zag for a first day (which may be before 1970).

use crate::types::Day;

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline(always)]
pub(super) fn get_varint(v: &[u8], at: &mut usize) -> Option<u64> {
    // Most counts and day distances fit one byte: that path is inlined
    // into every decoding loop, the rest is not.
    let b = *v.get(*at)?;
    if b & 0x80 == 0 {
        *at += 1;
        return Some(u64::from(b));
    }
    get_long_varint(v, at)
}

#[cold]
#[inline(never)]
fn get_long_varint(v: &[u8], at: &mut usize) -> Option<u64> {
    let mut x = 0;
    let mut shift = 0;
    while shift < 64 {
        let b = *v.get(*at)?;
        *at += 1;
        x |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(x);
        }
        shift += 7;
    }
    None
}

/// A day as a zig-zag varint.
pub(super) fn put_day(out: &mut Vec<u8>, d: Day) {
    put_varint(out, ((d.0 << 1) ^ (d.0 >> 31)) as u32 as u64);
}

/// A day written by [`put_day`]; `None` if it is not one.
pub(super) fn get_day(v: &[u8], at: &mut usize) -> Option<Day> {
    let z = u32::try_from(get_varint(v, at)?).ok()?;
    Some(Day(((z >> 1) as i32) ^ -((z & 1) as i32)))
}
