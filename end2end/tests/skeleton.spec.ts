import { test, expect } from '@playwright/test';
import { hydrated, registerByApi, signIn, uniqueUser } from './helpers';

test('the home page is rendered on the server (JavaScript off)', async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto('/');
  await expect(page.getByRole('heading', { level: 1 })).toContainText('done right');
  await expect(page.getByTestId('home-status')).toHaveText('You are not signed in.');
  await expect(page.getByRole('link', { name: 'Sign in' }).first()).toBeVisible();
  // Without the WASM nothing hydrates.
  await expect(page.locator('main')).toHaveAttribute('data-hydrated', 'false');
  await context.close();
});

test('the home page hydrates and becomes interactive', async ({ page }) => {
  await page.goto('/');
  await hydrated(page);
  const details = page.locator('#how-it-works');
  await expect(details).toBeHidden();
  await page.getByRole('button', { name: 'How does signing in work?' }).click();
  await expect(details).toBeVisible();
  await expect(details).toContainText('signed-out tokens');
  await page.getByRole('button', { name: 'Hide how it works' }).click();
  await expect(details).toBeHidden();
});

test('pages load without console errors or page errors', async ({ page }) => {
  const problems: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  for (const path of ['/', '/login', '/register']) {
    await page.goto(path);
    await hydrated(page);
  }
  // Client-side navigation too.
  await page.getByRole('link', { name: 'Sign in' }).first().click();
  await expect(page).toHaveURL(/\/login$/);
  expect(problems).toEqual([]);
});

test('/health answers 200', async ({ request }) => {
  const res = await request.get('/health');
  expect(res.status()).toBe(200);
  expect(await res.text()).toBe('ok');
});

test('an error written into a link is shown in our words, before and after hydration', async ({ page }) => {
  // URL-safe base64 with its padding, as Leptos writes it.
  const forged = (error: string) =>
    Buffer.from(JSON.stringify({ error, description: 'Your account is locked. Call +1 555 0100.' }))
      .toString('base64')
      .replace(/\+/g, '-')
      .replace(/\//g, '_');
  for (const [path, fn, code, ours] of [
    ['/login', '/api/login', 'invalid_credentials', 'The username or password is incorrect.'],
    ['/', '/api/logout', 'token_revoked', 'The token has been revoked. Please sign in again.'],
    ['/register', '/api/register', 'too_many_requests', 'Try again in'],
    ['/login', '/api/login', 'not_a_code', 'The form could not be read.'],
  ]) {
    await page.goto(`${path}?__path=${fn}&__err=${forged(code)}`);
    await hydrated(page);
    await expect(page.locator('body'), `${path}: ${code}`).toContainText(ours);
    await expect(page.locator('body')).not.toContainText('555');
  }
});

test('every page names its icon and a description, and the icon is served', async ({ page, request }) => {
  await page.goto('/login');
  await expect(page.locator('head meta[name="description"]')).toHaveAttribute('content', /sessions/);
  const icon = await page.locator('head link[rel="icon"]').getAttribute('href');
  expect(icon).toBe('/favicon.svg');
  const res = await request.get(icon!);
  expect(res.status()).toBe(200);
  expect(res.headers()['content-type']).toContain('image/svg+xml');
  expect(await res.text()).toContain('<svg');
});

/** The WASM files a page fetched, by name (`authapp.wasm`, `split___profile_view_….wasm`). */
function wasmFetched(page: import('@playwright/test').Page): string[] {
  const names: string[] = [];
  page.on('requestfinished', (req) => {
    const name = new URL(req.url()).pathname.split('/').pop() ?? '';
    if (name.endsWith('.wasm')) names.push(name);
  });
  return names;
}

test('a first visit fetches the main WASM alone; a signed-in page fetches its own chunk and hydrates', async ({ page, request }) => {
  const problems: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  const fetched = wasmFetched(page);

  for (const path of ['/', '/login', '/register']) {
    await page.goto(path);
    await hydrated(page);
  }
  expect(fetched.length).toBeGreaterThan(0);
  expect(fetched.filter((name) => name !== 'authapp.wasm' && !/^authapp\.[\w-]+\.wasm$/.test(name))).toEqual([]);

  // Signed in, a full load of each signed-in page hydrates it with its chunk.
  const user = uniqueUser('split');
  await registerByApi(request, user);
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page.getByTestId('profile-username')).toHaveText(user);
  for (const [path, chunk, ready] of [
    ['/profile', 'profile_view', page.getByTestId('profile-username')],
    ['/sessions', 'sessions_view', page.getByTestId('sessions')],
    ['/account', 'account_view', page.getByRole('heading', { name: 'Password and account' })],
  ] as const) {
    fetched.length = 0;
    await page.goto(path);
    await hydrated(page);
    await expect(ready).toBeVisible();
    // (Playwright may report a finished request a moment after the page used it.)
    await expect.poll(() => fetched.some((name) => name.includes(chunk)), { message: `${path}: ${fetched}` }).toBe(true);
  }
  // A client-side navigation to a lazy page renders it (the account page, from the profile).
  await page.goto('/profile');
  await hydrated(page);
  await page.getByRole('link', { name: 'Password and account' }).click();
  await expect(page).toHaveURL(/\/account$/);
  await expect(page.getByRole('heading', { name: 'Password and account' })).toBeVisible();
  expect(problems).toEqual([]);
});

test('the WASM is asked for only once the page has been painted, and then hydrates it', async ({ page }) => {
  for (const path of ['/', '/login', '/register']) {
    await page.goto(path);
    await hydrated(page);
    const t = await page.evaluate(() => {
      const started = (suffix: string) =>
        performance
          .getEntriesByType('resource')
          .filter((e) => new URL(e.name).pathname.endsWith(suffix))
          .map((e) => e.startTime);
      return {
        fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime,
        wasm: started('.wasm'),
        js: started('.js'),
      };
    });
    // A download that starts beside the stylesheet competes with it for a slow connection, and
    // Lighthouse then counts it as needed for the largest paint.
    expect(t.wasm, path).toHaveLength(1);
    expect(t.fcp, path).toBeDefined();
    for (const start of [...t.wasm, ...t.js]) {
      expect(start, `${path}: ${JSON.stringify(t)}`).toBeGreaterThan(t.fcp!);
    }
    await expect(page.locator('link[rel="preload"], link[rel="modulepreload"]')).toHaveCount(0);
  }
});

test('hydration adopts the nodes the server rendered: nothing is replaced or painted again', async ({ page }) => {
  // Each page's WASM is held back until every server-rendered node is tagged.
  let release = () => {};
  let held = Promise.resolve();
  await page.route('**/*.wasm', async (route) => {
    await held;
    await route.continue();
  });
  await page.addInitScript(() => {
    const w = window as unknown as { lcp: string[] };
    w.lcp = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries() as (PerformanceEntry & { element?: Element })[]) {
        w.lcp.push(`${e.element?.tagName}@${Math.round(e.startTime)}`);
      }
    }).observe({ type: 'largest-contentful-paint', buffered: true });
  });
  const painted = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 100))));
  for (const path of ['/', '/login', '/register']) {
    held = new Promise<void>((resolve) => (release = resolve));
    await page.goto(path);
    await painted();
    const before = await page.evaluate(() => {
      const w = window as unknown as { served: Node[]; lcp: string[] };
      const nodes: Node[] = [];
      const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
      while (walk.nextNode()) nodes.push(walk.currentNode);
      w.served = nodes;
      return { nodes: nodes.length, lcp: w.lcp.length, hydrated: document.querySelector('main')?.dataset.hydrated };
    });
    expect(before.hydrated, path).toBe('false');
    expect(before.lcp, path).toBeGreaterThan(0);
    release();
    await hydrated(page);
    // A frame for anything hydration painted to be reported.
    await painted();
    const after = await page.evaluate(() => {
      const w = window as unknown as { served: Node[]; lcp: string[] };
      const nodes: Node[] = [];
      const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
      while (walk.nextNode()) nodes.push(walk.currentNode);
      const served = new Set(w.served);
      const describe = (n: Node) => `${n.nodeName} ${JSON.stringify((n.textContent ?? '').slice(0, 30))}`;
      return {
        added: nodes.filter((n) => !served.has(n)).map(describe),
        dropped: w.served.filter((n) => !n.isConnected).map(describe),
        lcp: w.lcp,
      };
    });
    expect(after.added, path).toEqual([]);
    expect(after.dropped, path).toEqual([]);
    // No largest-paint candidate after the server's first paint.
    expect(after.lcp, path).toHaveLength(before.lcp);
  }
});
