//! The application: pages, routes and server functions, shared by the server (feature `ssr`)
//! and the browser (feature `hydrate`). Server-only code lives behind `ssr`.

pub mod api;
pub mod clock;
pub mod components;
pub mod error;
pub mod pages;
pub mod routes;
/// Who is signed in, as the UI keeps it (`AuthState`, `use_auth()`): not to be confused with
/// [`auth`] (the server side of the core) or `identity::Auth` (the core itself).
pub mod signed_in;
pub mod validate;

#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub use identity::store;

use std::sync::OnceLock;

use leptos::prelude::*;
use leptos_router::{
    components::{Route, Router, Routes},
    lazy_route, path, ChooseView, Lazy, LazyRoute, SsrMode, StaticSegment,
};

use pages::{
    AccountPage, ActivityPage, ForgotPage, HomePage, LoginPage, NotFound, ProfilePage,
    RegisterPage, ResetPage, SecurityPage, SessionsPage, TwoStepPage, VerifyPage,
};
use routes::{
    ACCOUNT, ACTIVITY, FORGOT, LOGIN, PROFILE, REGISTER, RESET, SECURITY, SESSIONS, TWO_STEP,
    VERIFY,
};

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    set_content_security_policy(&options);
    #[cfg(feature = "ssr")]
    let clock_meta = clock::provide_page_clock();
    #[cfg(not(feature = "ssr"))]
    let clock_meta = String::new();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationLoader options=options.clone()/>
                <title>"Auth app"</title>
                <meta
                    name="description"
                    content="Sign up, sign in, and see and end the sessions of your account."
                />
                // Named here, so a browser never asks for a missing /favicon.ico.
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <clock::ClockMeta meta=clock_meta/>
                <link rel="stylesheet" id="leptos" href=site_files(&options).css.clone()/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The script that loads the WASM and hydrates the page, started once the page has been painted.
/// It stands in for Leptos's `HydrationScripts`, which also puts a `modulepreload` of the JS and a
/// `preload` of the WASM in the head: the browser then downloads the WASM beside the stylesheet,
/// competing with it on a slow connection, and Lighthouse's mobile simulation counts every
/// request that finished before the largest paint as needed for that paint, so it replays the
/// WASM's download on its slow network ahead of a heading that the server's HTML painted on its
/// own (hydration adopts the server's nodes and paints nothing new). Here nothing of the WASM is
/// asked for before the first contentful paint, which on these pages, rendered whole on the
/// server, is also the largest. The `load` event is not enough: the first frame can come after
/// it, and so can an idle callback. Until the WASM runs, the forms post themselves. (Unlike
/// `HydrationScripts`, it provides no manifest of the split WASM's chunks to the render: the
/// split build loads them all the same, through its own `__wasm_split` script, once the main
/// WASM asks for them.)
#[component]
fn HydrationLoader(options: LeptosOptions) -> impl IntoView {
    const LOADER: &str = r#"(function (js, wasm) {
	let started = false;
	const hydrate = () => {
		if (started) return;
		started = true;
		// Both downloads at once: the WASM's does not wait for the JS that names it.
		const module = fetch(wasm);
		// Passkeys' browser side (public/passkeys.js), where the browser has them.
		if (window.PublicKeyCredential) import("/passkeys.js").catch(() => {});
		// Hydration runs in a task of its own after the WASM's instantiation: two shorter tasks
		// keep the page answering input better than one long one.
		import(js).then(mod => mod.default({ module_or_path: module })
			.then(() => setTimeout(() => mod.hydrate(), 0)));
	};
	const types = (window.PerformanceObserver && PerformanceObserver.supportedEntryTypes) || [];
	// A tab in the background paints nothing until it is shown: nothing to wait for there.
	if (document.visibilityState === "hidden" || !types.includes("paint")) {
		hydrate();
		return;
	}
	new PerformanceObserver((list, observer) => {
		if (list.getEntriesByName("first-contentful-paint").length) {
			observer.disconnect();
			setTimeout(hydrate, 0);
		}
	}).observe({ type: "paint", buffered: true });
	// The backstop of a page that is never painted.
	setTimeout(hydrate, 3000);
})"#;
    static SCRIPT: OnceLock<String> = OnceLock::new();
    let script = SCRIPT.get_or_init(|| {
        let files = site_files(&options);
        format!("{LOADER}({:?}, {:?});", files.js, files.wasm)
    });
    let nonce = leptos::nonce::use_nonce();
    view! { <script type="module" nonce=nonce>{script.as_str()}</script> }
}

/// The site's files a page names, as the release build named them: with `hash-files`, after
/// their content (`authapp.<hash>.wasm`, so browsers may keep them for good), the hashes read
/// from the file cargo-leptos writes beside the server's binary. Read once: the binary and its
/// site do not change under a running server.
struct SiteFiles {
    js: String,
    wasm: String,
    css: String,
}

fn site_files(options: &LeptosOptions) -> &'static SiteFiles {
    static FILES: OnceLock<SiteFiles> = OnceLock::new();
    FILES.get_or_init(|| {
        let pkg = &options.site_pkg_dir;
        let name = &options.output_name;
        let mut hash = std::collections::HashMap::new();
        if options.hash_files {
            let hashes = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join(options.hash_file.as_ref())))
                .and_then(|path| std::fs::read_to_string(path).ok());
            match hashes {
                Some(hashes) => {
                    for (file, h) in hashes.lines().filter_map(|l| l.trim().split_once(':')) {
                        hash.insert(file.trim().to_owned(), format!(".{}", h.trim()));
                    }
                }
                None => {
                    leptos::logging::error!("File hashing is active but no hash file was found")
                }
            }
        }
        let named = |kind: &str| hash.get(kind).map_or("", String::as_str).to_owned();
        // wasm-bindgen's own name for the WASM, when cargo-leptos did not name the output.
        let bg = if !options.hash_files && option_env!("LEPTOS_OUTPUT_NAME").is_none() {
            "_bg"
        } else {
            ""
        };
        SiteFiles {
            js: format!("/{pkg}/{name}{}.js", named("js")),
            wasm: format!("/{pkg}/{name}{bg}{}.wasm", named("wasm")),
            css: format!("/{pkg}/{name}{}.css", named("css")),
        }
    })
}

#[component]
pub fn App() -> impl IntoView {
    view! {
        <Router>
            <Layout/>
        </Router>
    }
}

/// Everything inside the router. The session lives here: its actions must be created under
/// the router, which hands them the error of a form posted without JavaScript.
#[component]
fn Layout() -> impl IntoView {
    signed_in::provide_auth();

    view! {
        <components::nav::Nav/>
        // True once the WASM has taken over the whole server-rendered page, a lazy page's view
        // too (see `hydrate`): end-to-end tests wait for it before they click.
        <main data-hydrated=move || whole_page_hydrated().to_string()>
            // Async: every page is rendered whole on the server, session included, so a
            // signed-in visitor never sees a flash of the signed-out state. The paths are the
            // table's (`routes`); the home page's is the root (`routes::HOME`).
            <Routes fallback=NotFound>
                <Route path=path!("/") view=HomePage ssr=SsrMode::Async/>
                <Route path=(StaticSegment(LOGIN.segment()),) view=LoginPage ssr=SsrMode::Async/>
                <Route path=(StaticSegment(REGISTER.segment()),) view=RegisterPage ssr=SsrMode::Async/>
                <Route path=(StaticSegment(PROFILE.segment()),) view={LazyPage::<Profile>::new()} ssr=SsrMode::Async/>
                <Route path=(StaticSegment(SESSIONS.segment()),) view={LazyPage::<Sessions>::new()} ssr=SsrMode::Async/>
                <Route path=(StaticSegment(ACCOUNT.segment()),) view={LazyPage::<Account>::new()} ssr=SsrMode::Async/>
                <Route path=(StaticSegment(FORGOT.segment()),) view={LazyPage::<Forgot>::new()} ssr=SsrMode::Async/>
                <Route path=(StaticSegment(RESET.segment()),) view={LazyPage::<Reset>::new()} ssr=SsrMode::Async/>
                <Route path=(StaticSegment(VERIFY.segment()),) view={LazyPage::<Verify>::new()} ssr=SsrMode::Async/>
                <Route path=(StaticSegment(SECURITY.segment()),) view={LazyPage::<Security>::new()} ssr=SsrMode::Async/>
                <Route path=(StaticSegment(TWO_STEP.segment()),) view={LazyPage::<TwoStep>::new()} ssr=SsrMode::Async/>
                <Route path=(StaticSegment(ACTIVITY.segment()),) view={LazyPage::<Activity>::new()} ssr=SsrMode::Async/>
            </Routes>
        </main>
    }
}

// The pages only a signed-in person opens are split out of the WASM a first visit downloads
// (`cargo leptos build --split`): each is a chunk of its own, fetched when the router needs it
// (hydrating such a page fetches its chunk first, once the main WASM runs: see `hydrate`; the
// page names no chunk for the browser to fetch earlier).
// Their data is the session's, already in the context, so `data()` has nothing to load.

/// `/profile`, in a chunk of its own.
struct Profile;

#[lazy_route]
impl LazyRoute for Profile {
    fn data() -> Self {
        Profile
    }

    fn view(_this: Self) -> AnyView {
        view! { <ProfilePage/> }.into_any()
    }
}

/// `/sessions`, in a chunk of its own.
struct Sessions;

#[lazy_route]
impl LazyRoute for Sessions {
    fn data() -> Self {
        Sessions
    }

    fn view(_this: Self) -> AnyView {
        view! { <SessionsPage/> }.into_any()
    }
}

/// `/account`, in a chunk of its own.
struct Account;

#[lazy_route]
impl LazyRoute for Account {
    fn data() -> Self {
        Account
    }

    fn view(_this: Self) -> AnyView {
        view! { <AccountPage/> }.into_any()
    }
}

/// `/security`, in a chunk of its own.
struct Security;

#[lazy_route]
impl LazyRoute for Security {
    fn data() -> Self {
        Security
    }

    fn view(_this: Self) -> AnyView {
        view! { <SecurityPage/> }.into_any()
    }
}

/// `/activity`, in a chunk of its own.
struct Activity;

#[lazy_route]
impl LazyRoute for Activity {
    fn data() -> Self {
        Activity
    }

    fn view(_this: Self) -> AnyView {
        view! { <ActivityPage/> }.into_any()
    }
}

/// `/two-step`, in a chunk of its own: only a sign-in with two-step sign-in on opens it.
struct TwoStep;

#[lazy_route]
impl LazyRoute for TwoStep {
    fn data() -> Self {
        TwoStep
    }

    fn view(_this: Self) -> AnyView {
        view! { <TwoStepPage/> }.into_any()
    }
}

/// A page in a chunk of its own ([`Lazy`]) whose view, in the browser, is hydrated in a task
/// after the one that hydrated the layout around it. The router awaits a page's `preload` (the
/// chunk's loading) before it hydrates the page; [`hydrate`] has loaded the chunk already, so
/// without the yield here that await would end at once, and the layout and the page would be
/// hydrated in one task: about 25 ms here, which Lighthouse's phone, four times slower, counts
/// as well over 50 ms of blocking. (Hydration polls `choose` once, synchronously, after every
/// `preload` is done: a `choose` still pending there would hydrate nothing, so the yield is in
/// `preload`.)
struct LazyPage<T>(Lazy<T>);

impl<T> LazyPage<T> {
    fn new() -> Self {
        Self(Lazy::new())
    }
}

impl<T> Clone for LazyPage<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: LazyRoute + Send + Sync> ChooseView for LazyPage<T> {
    async fn choose(self) -> AnyView {
        self.0.choose().await
    }

    async fn preload(&self) {
        self.0.preload().await;
        #[cfg(feature = "hydrate")]
        next_task().await;
    }
}

/// Resolves in a task of the browser's after this one (a timer of no delay).
#[cfg(feature = "hydrate")]
async fn next_task() {
    let next = js_sys::Promise::new(&mut |resolve, _| {
        set_timeout(
            move || _ = resolve.call0(&wasm_bindgen::JsValue::UNDEFINED),
            std::time::Duration::ZERO,
        );
    });
    _ = wasm_bindgen_futures::JsFuture::from(next).await;
}

/// Loads the chunk of the lazy page at `path`; false for a page in the main WASM (or no page).
/// Every `LazyPage` of the router is here.
#[cfg(feature = "hydrate")]
async fn load_page_chunk(path: &str) -> bool {
    match path {
        p if p == PROFILE.path => Profile::preload().await,
        p if p == SESSIONS.path => Sessions::preload().await,
        p if p == ACCOUNT.path => Account::preload().await,
        p if p == SECURITY.path => Security::preload().await,
        p if p == ACTIVITY.path => Activity::preload().await,
        p if p == TWO_STEP.path => TwoStep::preload().await,
        p if p == FORGOT.path => Forgot::preload().await,
        p if p == RESET.path => Reset::preload().await,
        p if p == VERIFY.path => Verify::preload().await,
        _ => return false,
    }
    true
}

#[cfg(feature = "hydrate")]
thread_local! {
    /// Set by [`hydrate`] once the whole page is hydrated.
    static HYDRATED: ArcRwSignal<bool> = ArcRwSignal::new(false);
}

/// Whether the WASM has taken over the whole page, a lazy page's view too (set by [`hydrate`]);
/// never on the server.
fn whole_page_hydrated() -> bool {
    #[cfg(feature = "hydrate")]
    {
        HYDRATED.with(|hydrated| hydrated.get())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        false
    }
}

/// Hydrates the server's page; the browser's entry point calls it once the WASM runs. A lazy
/// page's chunk (about ten small files for `/profile`) is fetched and instantiated first, in
/// tasks of its own; then the layout is hydrated in one task and the page in the next
/// ([`LazyPage`]). Left to `hydrate_lazy`, the chunk's fetches started in the task that built
/// the layout, which made it the longest task of a signed-in page's load (about 36 ms here;
/// Lighthouse's blocking time 99 to 135 ms on `/profile`, against 10 to 67 on the pages in the
/// main WASM). A chunk that cannot be fetched stops the WASM (wasm-split's loader panics): the
/// page stays as the server rendered it, its forms posting themselves.
#[cfg(feature = "hydrate")]
pub fn hydrate() {
    // Leptos's executor is wasm-bindgen's; `hydrate_from_async` sets it up for what it spawns,
    // and nothing before it needs it.
    wasm_bindgen_futures::spawn_local(async {
        let path = window().location().pathname().unwrap_or_default();
        if load_page_chunk(&path).await {
            next_task().await;
        }
        let Some(body) = document().body() else {
            return;
        };
        leptos::mount::hydrate_from_async(body, App).await.forget();
        HYDRATED.with(|hydrated| hydrated.set(true));
    });
}

// The pages of e-mail are opened from a mail or by a person who forgot a password: rare
// visits, each a chunk of its own.

/// `/forgot`, in a chunk of its own.
struct Forgot;

#[lazy_route]
impl LazyRoute for Forgot {
    fn data() -> Self {
        Forgot
    }

    fn view(_this: Self) -> AnyView {
        view! { <ForgotPage/> }.into_any()
    }
}

/// `/reset`, in a chunk of its own.
struct Reset;

#[lazy_route]
impl LazyRoute for Reset {
    fn data() -> Self {
        Reset
    }

    fn view(_this: Self) -> AnyView {
        view! { <ResetPage/> }.into_any()
    }
}

/// `/verify`, in a chunk of its own.
struct Verify;

#[lazy_route]
impl LazyRoute for Verify {
    fn data() -> Self {
        Verify
    }

    fn view(_this: Self) -> AnyView {
        view! { <VerifyPage/> }.into_any()
    }
}

/// Content-Security-Policy for a rendered page. Scripts run only from this site or inline with
/// this response's nonce (on the hydration loader, and on Leptos's resource scripts);
/// `'wasm-unsafe-eval'` lets the WASM compile; no framing, no plugins, forms post only here.
#[cfg(feature = "ssr")]
fn set_content_security_policy(options: &LeptosOptions) {
    use leptos::nonce::use_nonce;
    let (Some(nonce), Some(res)) = (use_nonce(), use_context::<leptos_axum::ResponseOptions>())
    else {
        return;
    };
    // `cargo leptos watch` reloads the page through a websocket on its own port.
    let reload = match options.env {
        leptos::config::Env::DEV => format!(
            " ws://{}:{} ws://localhost:{}",
            options.site_addr.ip(),
            options.reload_port,
            options.reload_port
        ),
        leptos::config::Env::PROD => String::new(),
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'{reload}; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = http::HeaderValue::from_str(&policy) {
        res.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    /// The router serves exactly the table's pages (`routes`), so the server's guard and the
    /// pages' links name the routes that exist.
    #[tokio::test]
    async fn the_router_serves_the_tables_pages() {
        let _ = any_spawner::Executor::init_tokio();
        let mut served: Vec<String> = leptos_axum::generate_route_list(super::App)
            .iter()
            .map(|route| route.path().to_owned())
            .collect();
        let mut pages: Vec<String> = super::routes::PAGES
            .iter()
            .map(|page| page.path.to_owned())
            .collect();
        served.sort();
        served.dedup();
        pages.sort();
        assert_eq!(served, pages);
    }
}
