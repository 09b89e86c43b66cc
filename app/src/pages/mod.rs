//! One file per page.

pub mod home;
pub mod login;
pub mod not_found;
pub mod profile;
pub mod register;

pub use home::HomePage;
pub use login::LoginPage;
pub use not_found::NotFound;
pub use profile::ProfilePage;
pub use register::RegisterPage;
