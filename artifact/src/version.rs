//! Semantic versions of components: `major.minor.patch`, ordered numerically.

use crate::Error;
use core::fmt;
use core::str::FromStr;

/// A release version. Pre-release and build suffixes are not part of the format: a device
/// orders releases by these three numbers only (and by the security counter for trust).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = Error;

    /// Parses `1.2.3`; each part is decimal without a sign or leading zeros (as semver says).
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut parts = s.split('.');
        let mut next = || -> Result<u32, Error> {
            let p = parts.next().ok_or(Error::InvalidValue)?;
            let canonical = !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'));
            if !canonical {
                return Err(Error::InvalidValue);
            }
            p.parse().map_err(|_| Error::InvalidValue)
        };
        let v = Version::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(Error::InvalidValue);
        }
        Ok(v)
    }
}
