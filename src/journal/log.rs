//! One journal file as an array of fixed-size slots, written through a shared memory
//! mapping: claiming a slot is one `fetch_add`, filling it is a copy, and no entry costs
//! a system call (a `write(2)` per entry was 8 % of an instance's CPU). The pages are
//! the file's own page cache, so what a killed process stored is what the next one
//! reads, exactly as with `write(2)`.
//!
//! Slot: tag u8 (0: empty), the entry's bytes, zeros, and an FNV-1a checksum of the
//! slot's other bytes in its last 4. The tag is stored last, with release ordering: a
//! slot whose writer died half-way, or that a purge zeroed under its writer, has tag 0
//! or a checksum that does not match, and replay skips it.
//!
//! The file grows in `GROW` steps inside a mapping reserved once (`RESERVE`); a purge
//! punches the written slots out (`fallocate`), which returns their memory and reads
//! back as empty slots, without moving any offset a writer may hold.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Bytes per slot; the longest entry is 34.
pub const SLOT: usize = 40;
/// Slot 0 of every slot-format file.
pub const MAGIC: [u8; SLOT] = *b"rinha journal: 40-byte slots, version 1\n";
const CHECK: usize = SLOT - 4;
/// Address space reserved per file (never touched beyond the file's length): 26 M slots.
const RESERVE: usize = 1 << 30;
const GROW: usize = 1 << 20;

/// The bytes of a slot holding `entry` (tag first, at most `CHECK` bytes).
pub fn slot(entry: &[u8]) -> [u8; SLOT] {
    let mut s = [0u8; SLOT];
    let n = entry.len().min(CHECK);
    s[..n].copy_from_slice(&entry[..n]);
    let sum = fnv(&s[..CHECK]);
    s[CHECK..].copy_from_slice(&sum.to_le_bytes());
    s
}

/// The entry bytes of a written, intact slot (with trailing zeros), or None.
pub fn entry(s: &[u8]) -> Option<&[u8]> {
    let s: &[u8; SLOT] = s.try_into().ok()?;
    if s[0] == 0 || s[CHECK..] != fnv(&s[..CHECK]).to_le_bytes() {
        return None;
    }
    Some(&s[..CHECK])
}

fn fnv(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &x| {
        (h ^ u32::from(x)).wrapping_mul(0x0100_0193)
    })
}

/// A mapping of `RESERVE` bytes of a file, unmapped on drop.
struct Mapping(NonNull<u8>);

// SAFETY: the mapping is plain shared memory; every access goes through `Log`, which
// hands each slot's bytes to exactly one writer and touches tags only atomically.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(file: &File) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of our own file at an address the kernel picks;
        // nothing else refers to that range yet.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                RESERVE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p.cast::<u8>())
            .map(Mapping)
            .ok_or_else(|| io::Error::other("mmap returned null"))
    }

    /// The tag byte of the slot at `off`.
    fn tag(&self, off: usize) -> &AtomicU8 {
        debug_assert!(off + SLOT <= RESERVE);
        // SAFETY: `off` is inside the mapping, the byte is only accessed atomically,
        // and the mapping outlives the returned reference (it lives as long as self).
        unsafe { AtomicU8::from_ptr(self.0.as_ptr().add(off)) }
    }

    /// Writes bytes 1.. of `s` into the slot at `off`, then its tag (release).
    ///
    /// The caller owns the slot (claimed it alone) and the file covers it.
    fn fill(&self, off: usize, s: &[u8; SLOT]) {
        debug_assert!(off + SLOT <= RESERVE);
        // SAFETY: [off, off + SLOT) is inside the mapping and inside the file (so no
        // SIGBUS), and no other thread writes or reads its bytes 1.. (one claim per slot;
        // a purge only punches pages in the kernel or stores tags atomically).
        unsafe {
            let p = self.0.as_ptr().add(off);
            std::ptr::copy_nonoverlapping(s.as_ptr().add(1), p.add(1), SLOT - 1);
        }
        self.tag(off).store(s[0], Ordering::Release);
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range mapped in `new`; no reference into it
        // survives the `Log` that owns this mapping.
        unsafe {
            libc::munmap(self.0.as_ptr().cast(), RESERVE);
        }
    }
}

/// An append-only slot file shared by any number of writer threads.
pub struct Log {
    file: File,
    map: Mapping,
    /// Offset of the next free slot.
    next: AtomicUsize,
    /// The file's length (a multiple of `GROW`, or of `SLOT` right after opening).
    len: AtomicUsize,
    grow: Mutex<()>,
}

impl Log {
    /// Opens the slot file at `path`, which must hold `MAGIC` and whole slots (as
    /// `Journal::open` writes it); appends follow what it holds.
    pub fn open(path: &str) -> io::Result<Log> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        if len < SLOT || len % SLOT != 0 || len > RESERVE {
            return Err(io::Error::other(format!("{path}: not a slot file")));
        }
        let map = Mapping::new(&file)?;
        Ok(Log {
            file,
            map,
            next: AtomicUsize::new(len),
            len: AtomicUsize::new(len),
            grow: Mutex::new(()),
        })
    }

    /// Appends one entry (tag first, nonzero). Lock-free unless the file must grow.
    pub fn append(&self, entry: &[u8]) -> io::Result<()> {
        let s = slot(entry);
        let off = self.next.fetch_add(SLOT, Ordering::Relaxed);
        let end = off.checked_add(SLOT).filter(|&e| e <= RESERVE);
        let end =
            end.ok_or_else(|| io::Error::other("journal full (1 GiB); restart compacts it"))?;
        if end > self.len.load(Ordering::Acquire) {
            self.grow_to(end)?;
        }
        self.map.fill(off, &s);
        Ok(())
    }

    fn grow_to(&self, end: usize) -> io::Result<()> {
        let _g = self.grow.lock().unwrap_or_else(|e| e.into_inner());
        let len = self.len.load(Ordering::Acquire);
        if end <= len {
            return Ok(());
        }
        let new = end.div_ceil(GROW).saturating_mul(GROW).min(RESERVE);
        self.file.set_len(new as u64)?;
        self.len.store(new, Ordering::Release);
        Ok(())
    }

    /// Empties every slot written so far. Writers keep their offsets; a slot being
    /// filled during the purge either survives whole or reads back as empty.
    pub fn clear(&self) -> io::Result<()> {
        let end = self
            .next
            .load(Ordering::Acquire)
            .min(self.len.load(Ordering::Acquire));
        if end <= SLOT {
            return Ok(());
        }
        let (Ok(start), Ok(n)) = (
            libc::off_t::try_from(SLOT),
            libc::off_t::try_from(end - SLOT),
        ) else {
            return Err(io::Error::other("journal offset out of range"));
        };
        // SAFETY: a plain syscall on our own descriptor; the pages it drops read back
        // as zeros through the mapping, and the file keeps its length (no SIGBUS).
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                start,
                n,
            )
        };
        if rc != 0 {
            // No hole punching on this file system: the memory stays, the slots empty.
            self.empty_tags(end);
        }
        Ok(())
    }

    fn empty_tags(&self, end: usize) {
        let mut off = SLOT;
        while off + SLOT <= end {
            self.map.tag(off).store(0, Ordering::Release);
            off += SLOT;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_round_trips_and_any_damage_is_refused() {
        let e = [b'A', 7, 7, 7];
        let s = slot(&e);
        assert_eq!(&entry(&s).unwrap()[..4], &e);
        assert!(entry(&s).unwrap()[4..].iter().all(|&b| b == 0));
        for i in 0..SLOT {
            let mut bad = s;
            bad[i] ^= 0x40;
            assert_eq!(entry(&bad), None, "byte {i}");
        }
        assert_eq!(entry(&[0u8; SLOT]), None, "an empty slot");
        assert_eq!(entry(&s[..SLOT - 1]), None, "a short slot");
    }

    fn log_with(tag: &str, n: usize) -> (String, Log) {
        let path = std::env::temp_dir()
            .join(format!("rinha-log-{tag}-{}", std::process::id()))
            .to_string_lossy()
            .into_owned();
        std::fs::write(&path, MAGIC).unwrap();
        let log = Log::open(&path).unwrap();
        for i in 0..n {
            log.append(&[b'A', (i % 251) as u8 + 1]).unwrap();
        }
        (path, log)
    }

    fn written(path: &str) -> usize {
        let bytes = std::fs::read(path).unwrap();
        bytes[SLOT..].chunks_exact(SLOT).filter_map(entry).count()
    }

    #[test]
    fn clear_punches_the_slots_out_and_appends_go_on() {
        use std::os::unix::fs::MetadataExt;
        let (path, log) = log_with("punch", 50_000);
        assert_eq!(written(&path), 50_000);
        let blocks = |p: &str| std::fs::metadata(p).unwrap().blocks();
        let before = blocks(&path);
        log.clear().unwrap();
        assert_eq!(written(&path), 0);
        assert!(
            blocks(&path) < before / 10,
            "{} of {before} blocks left",
            blocks(&path)
        );
        log.append(&[b'X', 1]).unwrap();
        assert_eq!(written(&path), 1);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn without_hole_punching_clear_empties_the_tags() {
        let (path, log) = log_with("tags", 1_000);
        log.empty_tags(log.next.load(Ordering::Relaxed));
        assert_eq!(written(&path), 0);
        log.append(&[b'X', 1]).unwrap();
        assert_eq!(written(&path), 1);
        let _ = std::fs::remove_file(&path);
    }
}
