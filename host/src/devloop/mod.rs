//! The merchant's dev loop: `hookhost send` (a signed webhook from a shipped sample),
//! `hookhost new` (a plugin crate scaffold) and `hookhost dev` (rebuild and hot-swap on save),
//! with [`signing`], the sender's side of every authentication scheme, and [`session`], how the
//! CLI finds a host's admin API from its config file.

pub mod dev;
pub mod fresh;
pub mod samples;
pub mod scaffold;
pub mod send;
pub mod session;
pub mod signing;
