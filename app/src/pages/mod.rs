//! One file per page.

pub mod account;
pub mod activity;
pub mod home;
pub mod login;
pub mod mail;
pub mod not_found;
pub mod profile;
pub mod register;
pub mod security;
pub mod sessions;
pub mod two_step;

pub use account::AccountPage;
pub use activity::ActivityPage;
pub use home::HomePage;
pub use login::LoginPage;
pub use mail::{ForgotPage, ResetPage, VerifyPage};
pub use not_found::NotFound;
pub use profile::ProfilePage;
pub use register::RegisterPage;
pub use security::SecurityPage;
pub use sessions::SessionsPage;
pub use two_step::TwoStepPage;
