// Sessions in the browser, against a server whose access tokens live a few seconds
// (global-setup.ts): tabs outlive them, pages load after they expired, and a person ends their
// other sessions from the sessions page or by changing the password.
import { Browser, BrowserContext, Page, test, expect } from '@playwright/test';
import { PASSWORD, PAST_ACCESS_TTL_MS, SHORT_REAUTH_WINDOW, hydrated, registerByApi, signIn, uniqueUser } from './helpers';

test.use({ baseURL: process.env.SESSIONS_BASE });

/** A new browser context signed in as `user` through the sign-in page, on its profile. */
async function signedIn(browser: Browser, user: string, password = PASSWORD): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ baseURL: process.env.SESSIONS_BASE });
  const page = await context.newPage();
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user, password);
  await expect(page).toHaveURL(/\/profile$/);
  return { context, page };
}

test('one browser signs another out from its sessions page; the other lands on sign-in with the reason', async ({ browser, request }) => {
  const user = uniqueUser('two');
  await registerByApi(request, user);
  const laptop = await signedIn(browser, user);
  const phone = await signedIn(browser, user);

  await laptop.page.goto('/sessions');
  await hydrated(laptop.page);
  const items = laptop.page.getByTestId('session');
  await expect(items).toHaveCount(2);
  await expect(laptop.page.getByTestId('this-device')).toHaveCount(1);
  const other = items.filter({ hasNot: laptop.page.getByTestId('this-device') });
  await expect(other).toContainText('Chrome');
  await other.getByRole('button', { name: /^Sign out / }).click();
  await expect(items).toHaveCount(1);
  await expect(items.first().getByTestId('this-device')).toBeVisible();

  // The phone's access token has not expired, but its session has ended.
  await phone.page.goto('/profile');
  await expect(phone.page).toHaveURL(/\/login\?next=%2Fprofile&reason=token_revoked$/);
  await expect(phone.page.getByTestId('session-notice')).toContainText('revoked');
  await laptop.context.close();
  await phone.context.close();
});

test('the sessions page opens from the profile link and after signing in with next=/sessions', async ({ browser, request }) => {
  const user = uniqueUser('link');
  await registerByApi(request, user);
  const { context, page } = await signedIn(browser, user);
  await hydrated(page);
  await page.getByRole('link', { name: 'Your sessions' }).click();
  await expect(page).toHaveURL(/\/sessions$/);
  await expect(page.getByTestId('session')).toHaveCount(1);
  await expect(page.getByTestId('this-device')).toBeVisible();
  // Sent to sign in from /sessions, then back there by the hydrated sign-in form.
  const other = await browser.newContext({ baseURL: process.env.SESSIONS_BASE });
  const second = await other.newPage();
  await second.goto('/sessions');
  await expect(second).toHaveURL(/\/login\?next=%2Fsessions$/);
  await hydrated(second);
  await signIn(second, user);
  await expect(second).toHaveURL(/\/sessions$/);
  await expect(second.getByTestId('session')).toHaveCount(2);
  await context.close();
  await other.close();
});

test('a tab left open past the access lifetime stays signed in, and its next action works', async ({ browser, request }) => {
  const user = uniqueUser('open');
  await registerByApi(request, user);
  const { context, page } = await signedIn(browser, user);
  await page.goto('/account');
  await hydrated(page);
  const accessCookie = async () => (await context.cookies()).find((c) => c.name === 'auth_token')?.value;
  const before = await accessCookie();
  // Several access lifetimes pass with the tab open: the tab renews its tokens by itself.
  await page.waitForTimeout(PAST_ACCESS_TTL_MS * 2);
  const after = await accessCookie();
  expect(after, 'the tab renewed its access token').toBeTruthy();
  expect(after).not.toEqual(before);
  await expect(page.getByTestId('nav-user')).toContainText(user);
  await page.getByLabel('Current password').fill(PASSWORD);
  await page.getByLabel('New password', { exact: true }).fill('a new password for this tab');
  await page.getByLabel('Repeat the new password').fill('a new password for this tab');
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.getByTestId('password-changed')).toBeVisible();
  await expect(page.getByTestId('nav-user')).toContainText(user);
  await context.close();
});

test('two tabs refreshing at the same moment both stay signed in', async ({ browser, request }) => {
  const user = uniqueUser('tabs');
  await registerByApi(request, user);
  const { context, page: first } = await signedIn(browser, user);
  const second = await context.newPage();
  await second.goto('/profile');
  await expect(second.getByTestId('profile-username')).toHaveText(user);
  await first.waitForTimeout(PAST_ACCESS_TTL_MS);
  // Both load with the same expired access token and the same refresh cookie.
  await Promise.all([first.reload(), second.reload()]);
  for (const page of [first, second]) {
    await expect(page).toHaveURL(/\/profile$/);
    await expect(page.getByTestId('profile-username')).toHaveText(user);
  }
  // And both go on: the session is whole.
  await Promise.all([first.goto('/sessions'), second.goto('/sessions')]);
  for (const page of [first, second]) {
    await expect(page.getByTestId('session')).toHaveCount(1);
  }
  await context.close();
});

test('a page loaded after the access token expired is rendered signed in', async ({ browser, request }) => {
  const user = uniqueUser('back');
  await registerByApi(request, user);
  const { context, page } = await signedIn(browser, user);
  await page.close();
  await new Promise((r) => setTimeout(r, PAST_ACCESS_TTL_MS));
  const again = await context.newPage();
  const res = await again.goto('/profile');
  expect(res?.status()).toBe(200);
  // Signed in in the server's HTML itself: no signed-out flash, no extra click.
  const html = await res!.text();
  expect(html).toContain('data-testid="profile-username"');
  expect(html).not.toContain('href="/login"');
  await expect(again.getByTestId('profile-username')).toHaveText(user);
  await context.close();
});

test('a password change posted with an expired access cookie keeps this browser signed in', async ({ browser, request }) => {
  const user = uniqueUser('stale');
  await registerByApi(request, user);
  const { context, page } = await signedIn(browser, user);
  await page.goto('/account');
  await hydrated(page);
  // The tab's own renewal is stopped: the form goes out with an expired access cookie, and the
  // server renews the session on the way in.
  await page.evaluate(() => {
    for (let id = 0; id < 10000; id++) window.clearTimeout(id);
  });
  await page.waitForTimeout(PAST_ACCESS_TTL_MS);
  await page.getByLabel('Current password').fill(PASSWORD);
  await page.getByLabel('New password', { exact: true }).fill('changed while stale');
  await page.getByLabel('Repeat the new password').fill('changed while stale');
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.getByTestId('password-changed')).toBeVisible();
  // Later renewals go on with the pair the change handed out, not one it replaced.
  await page.waitForTimeout(PAST_ACCESS_TTL_MS);
  await page.goto('/profile');
  await expect(page).toHaveURL(/\/profile$/);
  await expect(page.getByTestId('profile-username')).toHaveText(user);
  await page.goto('/sessions');
  await expect(page.getByTestId('session')).toHaveCount(1);
  await context.close();
});

test('changing the password signs the other browser out', async ({ browser, request }) => {
  const user = uniqueUser('pw');
  await registerByApi(request, user);
  const here = await signedIn(browser, user);
  const there = await signedIn(browser, user);
  await here.page.goto('/account');
  await hydrated(here.page);
  await here.page.getByLabel('Current password').fill('not my password');
  await here.page.getByLabel('New password', { exact: true }).fill('another fine password');
  await here.page.getByLabel('Repeat the new password').fill('another fine password');
  await here.page.getByRole('button', { name: 'Change password' }).click();
  await expect(here.page.getByRole('alert')).toHaveText('The current password is incorrect.');

  // The form came back with the error: every field is filled in again.
  await here.page.getByLabel('Current password').fill(PASSWORD);
  await here.page.getByLabel('New password', { exact: true }).fill('another fine password');
  await here.page.getByLabel('Repeat the new password').fill('another fine password');
  await here.page.getByRole('button', { name: 'Change password' }).click();
  await expect(here.page.getByTestId('password-changed')).toBeVisible();

  await there.page.goto('/profile');
  await expect(there.page).toHaveURL(/\/login\?next=%2Fprofile&reason=token_revoked$/);
  await expect(there.page.getByTestId('session-notice')).toContainText('revoked');
  // The new password signs in; this browser is still signed in.
  await signIn(there.page, user, 'another fine password');
  await expect(there.page).toHaveURL(/\/profile$/);
  await here.page.goto('/profile');
  await expect(here.page.getByTestId('profile-username')).toHaveText(user);
  await here.context.close();
  await there.context.close();
});

test('deleting the account signs every browser out and the name can be taken again', async ({ browser, request }) => {
  const user = uniqueUser('del');
  await registerByApi(request, user);
  const here = await signedIn(browser, user);
  const there = await signedIn(browser, user);
  await here.page.goto('/account');
  await hydrated(here.page);
  await here.page.getByRole('form', { name: 'Delete your account' }).getByLabel('Your password').fill(PASSWORD);
  await here.page.getByRole('button', { name: 'Delete my account' }).click();
  await expect(here.page).toHaveURL(/\/\?deleted=1$/);
  await expect(here.page.getByTestId('account-deleted')).toBeVisible();
  await expect(here.page.getByTestId('nav-user')).toHaveCount(0);
  await there.page.goto('/sessions');
  await expect(there.page).toHaveURL(/\/login\?next=%2Fsessions&reason=token_revoked$/);
  await registerByApi(request, user);
  await here.context.close();
  await there.context.close();
});

test.describe('with JavaScript disabled', () => {
  test.use({ javaScriptEnabled: false });

  test('the sessions page signs out another session and everywhere else', async ({ browser, request }) => {
    const user = uniqueUser('nojs');
    await registerByApi(request, user);
    const others = [await signedInNoJs(browser, user), await signedInNoJs(browser, user)];
    const me = await signedInNoJs(browser, user);
    await me.page.goto('/sessions');
    await expect(me.page.getByTestId('session')).toHaveCount(3);
    const other = me.page.getByTestId('session').filter({ hasNot: me.page.getByTestId('this-device') });
    await other.first().getByRole('button', { name: /^Sign out / }).click();
    await expect(me.page).toHaveURL(/\/sessions$/);
    await expect(me.page.getByTestId('session')).toHaveCount(2);
    await me.page.getByRole('button', { name: 'Sign out everywhere else' }).click();
    await expect(me.page).toHaveURL(/\/sessions\?ended=1$/);
    await expect(me.page.getByTestId('sessions-ended')).toHaveText('One other session was signed out.');
    await expect(me.page.getByTestId('session')).toHaveCount(1);
    for (const o of others) {
      await o.page.goto('/profile');
      await expect(o.page).toHaveURL(/\/login\?next=%2Fprofile&reason=token_revoked$/);
      await o.context.close();
    }
    await me.context.close();
  });
});

/** Signed in with the plain form post (no JavaScript). */
async function signedInNoJs(browser: Browser, user: string) {
  const context = await browser.newContext({ baseURL: process.env.SESSIONS_BASE, javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto('/login');
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  return { context, page };
}

test('a password change from a sign-in older than REAUTH_WINDOW asks to confirm, then goes through', async ({ browser, request }) => {
  test.setTimeout(90_000);
  const user = uniqueUser('stepup');
  await registerByApi(request, user);
  const { context, page } = await signedIn(browser, user);
  // Past the window: the tab has renewed its tokens meanwhile, which makes nothing fresh.
  await page.waitForTimeout((SHORT_REAUTH_WINDOW + 2) * 1000);
  await page.goto('/account');
  await hydrated(page);
  const change = async () => {
    await page.getByLabel('Current password').fill(PASSWORD);
    await page.getByLabel('New password', { exact: true }).fill('changed after confirming');
    await page.getByLabel('Repeat the new password').fill('changed after confirming');
    await page.getByRole('button', { name: 'Change password' }).click();
  };
  await change();
  const confirm = page.getByTestId('reauth');
  await expect(confirm).toBeVisible();
  await expect(page.getByTestId('password-changed')).toHaveCount(0);
  // The wrong password is refused, and asked again.
  await confirm.getByLabel('Your password').fill('not my password at all');
  await confirm.getByRole('button', { name: 'Confirm' }).click();
  await expect(page.getByTestId('reauth').getByRole('alert')).toContainText('incorrect');
  await page.getByTestId('reauth').getByLabel('Your password').fill(PASSWORD);
  await page.getByTestId('reauth').getByRole('button', { name: 'Confirm' }).click();
  await expect(page.getByTestId('reauth-ok')).toBeVisible();
  await change();
  await expect(page.getByTestId('password-changed')).toBeVisible();
  await context.close();
});
