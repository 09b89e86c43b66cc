//! Delivery: the background sender that takes mail from the outbox and hands it to the mail
//! server over SMTP (lettre).
//!
//! STUB: being written.
