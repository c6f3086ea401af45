//! A bounds-checked, zero-copy FlatBuffers reader: every offset is checked before it is followed.

use crate::Error;

/// The whole buffer; positions are byte offsets into it.
#[derive(Debug, Clone, Copy)]
pub struct Buf<'a>(pub &'a [u8]);

impl<'a> Buf<'a> {
    fn bytes<const N: usize>(self, pos: usize) -> Result<[u8; N], Error> {
        let end = pos.checked_add(N).ok_or(Error::OutOfBounds)?;
        let s = self.0.get(pos..end).ok_or(Error::OutOfBounds)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub fn u8(self, pos: usize) -> Result<u8, Error> {
        self.0.get(pos).copied().ok_or(Error::OutOfBounds)
    }
    pub fn u16(self, pos: usize) -> Result<u16, Error> {
        self.bytes(pos).map(u16::from_le_bytes)
    }
    pub fn u32(self, pos: usize) -> Result<u32, Error> {
        self.bytes(pos).map(u32::from_le_bytes)
    }
    pub fn i32(self, pos: usize) -> Result<i32, Error> {
        self.bytes(pos).map(i32::from_le_bytes)
    }
    pub fn i64(self, pos: usize) -> Result<i64, Error> {
        self.bytes(pos).map(i64::from_le_bytes)
    }
    pub fn f32(self, pos: usize) -> Result<f32, Error> {
        self.bytes(pos).map(f32::from_le_bytes)
    }

    /// Follows the unsigned offset stored at `pos` (relative to `pos`).
    fn follow(self, pos: usize) -> Result<usize, Error> {
        let rel = usize::try_from(self.u32(pos)?).map_err(|_| Error::OutOfBounds)?;
        let target = pos.checked_add(rel).ok_or(Error::OutOfBounds)?;
        if target >= self.0.len() {
            return Err(Error::OutOfBounds);
        }
        Ok(target)
    }

    /// The root table of the buffer.
    pub fn root(self) -> Result<Table<'a>, Error> {
        Table::at(self, self.follow(0)?)
    }
}

/// A table: its position and its vtable.
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    buf: Buf<'a>,
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> Table<'a> {
    fn at(buf: Buf<'a>, pos: usize) -> Result<Self, Error> {
        // The vtable lies at pos - soffset (soffset is signed).
        let soffset = i64::from(buf.i32(pos)?);
        let vtable = i64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_sub(soffset))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or(Error::OutOfBounds)?;
        let vtable_len = usize::from(buf.u16(vtable)?);
        let table_len = usize::from(buf.u16(vtable.checked_add(2).ok_or(Error::OutOfBounds)?)?);
        if vtable_len < 4 || vtable_len % 2 != 0 {
            return Err(Error::Malformed);
        }
        // The vtable and the table's inline part must both lie inside the buffer.
        buf.0
            .get(vtable..vtable.checked_add(vtable_len).ok_or(Error::OutOfBounds)?)
            .ok_or(Error::OutOfBounds)?;
        buf.0
            .get(pos..pos.checked_add(table_len).ok_or(Error::OutOfBounds)?)
            .ok_or(Error::OutOfBounds)?;
        Ok(Table {
            buf,
            pos,
            vtable,
            vtable_len,
        })
    }

    /// Position of field `index`, or `None` when the field is absent.
    fn field(&self, index: usize) -> Result<Option<usize>, Error> {
        let slot = index
            .checked_mul(2)
            .and_then(|s| s.checked_add(4))
            .ok_or(Error::OutOfBounds)?;
        if slot.checked_add(2).is_none_or(|end| end > self.vtable_len) {
            return Ok(None);
        }
        let off = usize::from(self.buf.u16(self.vtable + slot)?);
        if off == 0 {
            return Ok(None);
        }
        self.pos
            .checked_add(off)
            .map(Some)
            .ok_or(Error::OutOfBounds)
    }

    pub fn u8(&self, index: usize, default: u8) -> Result<u8, Error> {
        self.field(index)?.map_or(Ok(default), |p| self.buf.u8(p))
    }
    pub fn i8(&self, index: usize, default: i8) -> Result<i8, Error> {
        self.u8(index, default as u8).map(|v| v as i8)
    }
    pub fn bool(&self, index: usize) -> Result<bool, Error> {
        self.u8(index, 0).map(|v| v != 0)
    }
    pub fn i32(&self, index: usize, default: i32) -> Result<i32, Error> {
        self.field(index)?.map_or(Ok(default), |p| self.buf.i32(p))
    }
    pub fn u32(&self, index: usize, default: u32) -> Result<u32, Error> {
        self.field(index)?.map_or(Ok(default), |p| self.buf.u32(p))
    }
    pub fn u64(&self, index: usize, default: u64) -> Result<u64, Error> {
        self.field(index)?
            .map_or(Ok(default), |p| self.buf.i64(p).map(|v| v as u64))
    }
    pub fn f32(&self, index: usize, default: f32) -> Result<f32, Error> {
        self.field(index)?.map_or(Ok(default), |p| self.buf.f32(p))
    }

    pub fn table(&self, index: usize) -> Result<Option<Table<'a>>, Error> {
        match self.field(index)? {
            None => Ok(None),
            Some(p) => Table::at(self.buf, self.buf.follow(p)?).map(Some),
        }
    }

    /// A vector field whose elements are `elem` bytes wide.
    pub fn vector(&self, index: usize, elem: usize) -> Result<Option<Vector<'a>>, Error> {
        match self.field(index)? {
            None => Ok(None),
            Some(p) => Vector::at(self.buf, self.buf.follow(p)?, elem).map(Some),
        }
    }
}

/// A vector: `len` elements of `elem` bytes from `start`, all inside the buffer.
#[derive(Debug, Clone, Copy)]
pub struct Vector<'a> {
    buf: Buf<'a>,
    start: usize,
    len: usize,
    elem: usize,
}

impl<'a> Vector<'a> {
    fn at(buf: Buf<'a>, pos: usize, elem: usize) -> Result<Self, Error> {
        let len = usize::try_from(buf.u32(pos)?).map_err(|_| Error::OutOfBounds)?;
        let start = pos.checked_add(4).ok_or(Error::OutOfBounds)?;
        let end = len
            .checked_mul(elem)
            .and_then(|n| n.checked_add(start))
            .ok_or(Error::OutOfBounds)?;
        if end > buf.0.len() {
            return Err(Error::OutOfBounds);
        }
        Ok(Vector {
            buf,
            start,
            len,
            elem,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn pos(&self, i: usize) -> Result<usize, Error> {
        if i >= self.len {
            return Err(Error::OutOfBounds);
        }
        Ok(self.start + i * self.elem)
    }

    pub fn i32(&self, i: usize) -> Result<i32, Error> {
        self.buf.i32(self.pos(i)?)
    }
    pub fn i64(&self, i: usize) -> Result<i64, Error> {
        self.buf.i64(self.pos(i)?)
    }
    pub fn f32(&self, i: usize) -> Result<f32, Error> {
        self.buf.f32(self.pos(i)?)
    }
    pub fn table(&self, i: usize) -> Result<Table<'a>, Error> {
        let p = self.pos(i)?;
        Table::at(self.buf, self.buf.follow(p)?)
    }

    /// The raw bytes of a byte vector.
    pub fn bytes(&self) -> &'a [u8] {
        // In bounds: checked in `at`.
        self.buf
            .0
            .get(self.start..self.start + self.len * self.elem)
            .unwrap_or(&[])
    }
}
