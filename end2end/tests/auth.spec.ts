import { test, expect } from '@playwright/test';
import { PASSWORD, hydrated, registerByApi, registerByUi, signIn, uniqueUser } from './helpers';

test('register, sign in, see the profile, sign out, and the profile is closed again', async ({ page }) => {
  const user = uniqueUser('flow');
  await registerByUi(page, user);
  await expect(page.getByText('Your account was created')).toBeVisible();

  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  await expect(page.getByTestId('profile-username')).toHaveText(user);
  await expect(page.getByTestId('profile-expires')).toContainText('UTC');
  await expect(page.getByTestId('nav-user')).toContainText(user);

  // A full reload is rendered on the server with the session: no signed-out flash.
  await page.reload();
  await expect(page.getByTestId('profile-username')).toHaveText(user);

  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId('home-status')).toHaveText('You are not signed in.');
  await expect(page.getByTestId('nav-user')).toHaveCount(0);

  await page.goto('/profile');
  await expect(page).toHaveURL(/\/login\?next=%2Fprofile$/);
});

test('visiting /profile signed out, then signing in, lands back on /profile', async ({ page, request }) => {
  const user = uniqueUser('next');
  await registerByApi(request, user);

  await page.goto('/profile');
  await expect(page).toHaveURL(/\/login\?next=%2Fprofile$/);
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  await expect(page.getByTestId('profile-username')).toHaveText(user);
});

test('a signed-in visit to /profile never shows the signed-out state, before or after hydration', async ({ page, request }) => {
  const user = uniqueUser('flash');
  await registerByApi(request, user);
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);

  // Watch every node the parser and the WASM add, from the first byte of the next load.
  await page.addInitScript(() => {
    const seen: string[] = [];
    (window as unknown as { signedOutSeen: string[] }).signedOutSeen = seen;
    const look = () => {
      if (document.querySelector('a[href="/login"]')) seen.push('a sign-in link');
      if (document.querySelector('[data-testid="home-status"]')) seen.push('the signed-out home');
      if (document.body && /Loading/.test(document.body.textContent ?? '')) seen.push('a loading placeholder');
    };
    new MutationObserver(look).observe(document, { childList: true, subtree: true, characterData: true });
  });
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId('profile-username')).toHaveText(user);
  await expect(page.getByTestId('nav-user')).toContainText(user);
  const seen = await page.evaluate(() => (window as unknown as { signedOutSeen: string[] }).signedOutSeen);
  expect(seen).toEqual([]);
});

test('a token captured before sign-out is refused afterwards with token_revoked', async ({ page, context, request }) => {
  const user = uniqueUser('rev');
  await registerByApi(request, user);
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);

  const cookie = (await context.cookies()).find((c) => c.name === 'auth_token');
  expect(cookie, 'session cookie').toBeDefined();
  expect(cookie!.httpOnly).toBe(true);
  expect(cookie!.sameSite).toBe('Strict');
  const token = cookie!.value;

  const before = await request.get('/api/me', { headers: { Authorization: `Bearer ${token}` } });
  expect(before.status()).toBe(200);
  expect((await before.json()).username).toBe(user);

  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await expect(page.getByTestId('home-status')).toHaveText('You are not signed in.');

  const after = await request.get('/api/me', { headers: { Authorization: `Bearer ${token}` } });
  expect(after.status()).toBe(401);
  expect(after.headers()['www-authenticate']).toContain('invalid_token');
  const body = await after.json();
  expect(body.error).toBe('token_revoked');
  expect(body.description).toBeTruthy();
});

test('a wrong password shows an inline error and keeps the visitor on the sign-in page', async ({ page, request }) => {
  const user = uniqueUser('bad');
  await registerByApi(request, user);
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user, 'not the password');
  await expect(page.getByRole('alert')).toHaveText('The username or password is incorrect.');
  await expect(page).toHaveURL(/\/login$/);
});

test('a taken username is explained on the sign-up page', async ({ page, request }) => {
  const user = uniqueUser('dup');
  await registerByApi(request, user);
  await page.goto('/register');
  await hydrated(page);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Repeat the password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('alert')).toContainText('already taken');
});

test('the session ends in the UI when the token is revoked elsewhere', async ({ page, context, request }) => {
  const user = uniqueUser('else');
  await registerByApi(request, user);
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  const token = (await context.cookies()).find((c) => c.name === 'auth_token')!.value;

  // Another client signs this token out.
  const out = await request.post('/api/logout', { headers: { Authorization: `Bearer ${token}` } });
  expect(out.status()).toBe(200);

  // The next server call from this page is refused; the UI drops the session and says why.
  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await expect(page.getByTestId('session-notice')).toContainText('revoked');
  await expect(page.getByTestId('nav-user')).toHaveCount(0);
  // The profile cannot be shown any more: the visitor is asked to sign in again, with the reason.
  await expect(page).toHaveURL(/\/login\?next=%2Fprofile$/);
  await expect(page.getByTestId('session-notice')).toContainText('revoked');
});

test.describe('with JavaScript disabled', () => {
  test.use({ javaScriptEnabled: false });

  test('the sign-in form works and lands on next', async ({ page, request }) => {
    const user = uniqueUser('nojs');
    await registerByApi(request, user);

    await page.goto('/profile');
    await expect(page).toHaveURL(/\/login\?next=%2Fprofile$/);
    await signIn(page, user, 'wrong password!');
    await expect(page.getByRole('alert')).toHaveText('The username or password is incorrect.');

    await signIn(page, user);
    await expect(page).toHaveURL(/\/profile$/);
    await expect(page.getByTestId('profile-username')).toHaveText(user);

    await page.getByRole('button', { name: 'Sign out' }).first().click();
    await expect(page).toHaveURL(/\/$/);
    await expect(page.getByTestId('home-status')).toHaveText('You are not signed in.');
  });
});
