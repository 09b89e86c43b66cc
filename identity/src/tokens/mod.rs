//! The tokens the core hands out: short access JWTs and the cache of verified ones
//! ([`access`]), and the codec of the refresh tokens that keep a session going ([`refresh`]).
//! What a token is worth (its session live, its `jti` not revoked) is decided elsewhere:
//! [`crate::sessions`] and [`crate::access`].

pub mod access;
pub mod refresh;
