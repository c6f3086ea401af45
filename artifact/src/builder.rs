//! `ManifestBuilder`: a release manifest put together from its payloads (size and SHA-256
//! computed here), for the host tools, simulators and tests that make releases.

use crate::{Component, ComponentKind, Error, Manifest, Policy, Version, sha256};

/// Builds a [`Manifest`]: boards, components from their payload bytes, what a model needs and
/// its validation policy. [`build`](Self::build) checks the result as a decoder would.
///
/// ```
/// use artifact::{ManifestBuilder, Version};
/// let m = ManifestBuilder::new(2)
///     .board("mps2-an386")
///     .firmware("agent", Version::new(2, 0, 0), b"image bytes", 1)
///     .build()
///     .unwrap();
/// assert_eq!(m.components[0].size, 11);
/// ```
#[derive(Debug, Clone)]
pub struct ManifestBuilder<'a> {
    manifest: Manifest<'a>,
    /// The first thing that did not fit (reported by `build`).
    error: Option<Error>,
}

impl<'a> ManifestBuilder<'a> {
    /// A manifest with security counter `security_counter` and nothing else yet.
    pub fn new(security_counter: u64) -> Self {
        ManifestBuilder {
            manifest: Manifest {
                security_counter,
                ..Manifest::empty()
            },
            error: None,
        }
    }

    /// One more board the release runs on.
    pub fn board(mut self, board: &'a str) -> Self {
        if self.manifest.boards.push(board).is_err() {
            self.error.get_or_insert(Error::TooMany);
        }
        self
    }

    /// A component of `kind` for `payload`; components are kept in kind order.
    pub fn component(
        mut self,
        kind: ComponentKind,
        name: &'a str,
        version: Version,
        payload: &[u8],
    ) -> Self {
        let Ok(size) = u32::try_from(payload.len()) else {
            self.error.get_or_insert(Error::TooLarge);
            return self;
        };
        let component = Component {
            kind,
            name,
            version,
            size,
            digest: sha256(payload),
        };
        if self.manifest.components.push(component).is_err() {
            self.error.get_or_insert(Error::TooMany);
        }
        self.manifest.components.sort_unstable_by_key(|c| c.kind);
        self
    }

    /// A firmware image that provides model-runtime ABI `runtime_abi`.
    pub fn firmware(self, name: &'a str, version: Version, image: &[u8], runtime_abi: u32) -> Self {
        let mut b = self.component(ComponentKind::Firmware, name, version, image);
        b.manifest.runtime_abi = Some(runtime_abi);
        b
    }

    /// A model and its validation set, both named `name` at `version`.
    pub fn model(self, name: &'a str, version: Version, model: &[u8], set: &[u8]) -> Self {
        self.component(ComponentKind::Model, name, version, model)
            .component(ComponentKind::ValidationSet, name, version, set)
    }

    /// What the model needs: the model-runtime ABI and tensor arena bytes.
    pub fn requires(mut self, runtime_abi: u32, arena_size: u32) -> Self {
        self.manifest.required_abi = Some(runtime_abi);
        self.manifest.arena_size = Some(arena_size);
        self
    }

    /// The model's validation policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.manifest.policy = Some(policy);
        self
    }

    /// The manifest, if it is a valid release.
    pub fn build(self) -> Result<Manifest<'a>, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.manifest.validate()?;
        Ok(self.manifest)
    }

    /// The manifest signed with every key: its envelope.
    #[cfg(feature = "alloc")]
    pub fn sign(self, keys: &[ed25519_dalek::SigningKey]) -> Result<alloc::vec::Vec<u8>, Error> {
        let body = self.build()?.to_vec()?;
        crate::Envelope::sign(crate::DocumentType::Manifest, &body, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_manifest_field_by_field() {
        let v = Version::new(1, 2, 3);
        let policy = Policy::default();
        let component = |kind, payload: &[u8]| Component {
            kind,
            name: "digits",
            version: v,
            size: payload.len() as u32,
            digest: sha256(payload),
        };
        let expected = Manifest {
            security_counter: 4,
            boards: ["a", "b"].into_iter().collect(),
            components: [
                component(ComponentKind::Firmware, b"fw"),
                component(ComponentKind::Model, b"model"),
                component(ComponentKind::ValidationSet, b"set"),
            ]
            .into_iter()
            .collect(),
            runtime_abi: Some(1),
            required_abi: Some(1),
            arena_size: Some(8192),
            policy: Some(policy),
        };
        // Components in any order come out in kind order.
        let built = ManifestBuilder::new(4)
            .board("a")
            .board("b")
            .model("digits", v, b"model", b"set")
            .firmware("digits", v, b"fw", 1)
            .requires(1, 8192)
            .policy(policy)
            .build();
        assert_eq!(built, Ok(expected));
    }

    #[test]
    fn refuses_what_does_not_fit_or_is_not_a_release() {
        let mut b = ManifestBuilder::new(1);
        for _ in 0..=crate::MAX_BOARDS {
            b = b.board("x");
        }
        assert_eq!(b.build(), Err(Error::TooMany));
        let no_set = ManifestBuilder::new(1).board("x").component(
            ComponentKind::Model,
            "m",
            Version::new(1, 0, 0),
            b"model",
        );
        assert_eq!(no_set.build(), Err(Error::InconsistentComponents));
    }
}
