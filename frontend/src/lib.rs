//! The browser entry point: hydrates the server-rendered page. Nothing else lives here.

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen]
pub fn hydrate() {
    // Panic messages in the console in development; left out of release builds to keep the
    // WASM small.
    #[cfg(debug_assertions)]
    console_error_panic_hook::set_once();
    // The chunk of a lazily loaded page first, then the page (see `app::hydrate`).
    app::hydrate();
}
