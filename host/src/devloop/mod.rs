//! The merchant's dev loop: `hookhost send` (a signed webhook from a shipped sample),
//! `hookhost new` (a plugin crate scaffold) and `hookhost dev` (rebuild and hot-swap on save).

pub mod dev;
pub mod samples;
pub mod scaffold;
pub mod send;
