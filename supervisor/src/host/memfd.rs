//! A helper's settings travel in a sealed memfd: readable once, unchangeable by anyone (the
//! seals forbid writes, growth and shrinking, and further seal changes), never on disk.

use std::ffi::CStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

/// A close-on-exec memfd holding `data`, sealed, positioned at its start.
pub fn sealed(name: &CStr, data: &[u8]) -> std::io::Result<OwnedFd> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(data)?;
    // The helper reads from the shared file offset.
    file.seek(SeekFrom::Start(0))?;
    let fd = OwnedFd::from(file);
    fcntl(
        &fd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SEAL
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE,
        ),
    )?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn is_sealed_and_reads_back() {
        let fd = sealed(c"test", b"settings bytes").unwrap();
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).unwrap();
        let all = SealFlag::F_SEAL_SEAL
            | SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE;
        assert_eq!(SealFlag::from_bits_truncate(seals) & all, all);
        let mut file = std::fs::File::from(fd);
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "settings bytes");
        let err = file.write_all(b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        assert!(file.set_len(0).is_err());
    }
}
