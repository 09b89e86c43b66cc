//! Pieces shared by the pages: the header and the form plumbing.

pub mod form;
pub mod nav;
