//! Pieces shared by the pages: the header, the form plumbing and the "confirm it is you"
//! form.

pub mod form;
pub mod nav;
pub mod reauth;
