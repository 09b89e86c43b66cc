import { APIRequestContext, Page, expect } from '@playwright/test';

/** A username no other test (or earlier run on the same database) uses. */
export function uniqueUser(prefix = 'u'): string {
  const rand = Math.random().toString(36).slice(2, 8);
  return `${prefix}_${Date.now().toString(36)}_${rand}`.slice(0, 32);
}

export const PASSWORD = 'correct horse battery staple';

/** The access-token lifetime of the `sessions` project's server (global-setup.ts), in seconds. */
export const SHORT_ACCESS_TTL = 4;

/** Long enough for an access token of that server to be refused as expired (its lifetime and
 * the verifier's 2 s leeway, and a margin). */
export const PAST_ACCESS_TTL_MS = (SHORT_ACCESS_TTL + 3) * 1000;

/** Waits until the WASM has hydrated the page (the marker is set only in the browser). */
export async function hydrated(page: Page) {
  await expect(page.locator('main[data-hydrated="true"]')).toBeAttached();
}

/** Creates an account through the HTTP API, as a script would. */
export async function registerByApi(request: APIRequestContext, username: string, password = PASSWORD) {
  const res = await request.post('/api/register', { form: { username, password } });
  expect(res.status(), await res.text()).toBe(200);
}

/** Creates an account through the sign-up page. */
export async function registerByUi(page: Page, username: string, password = PASSWORD) {
  await page.goto('/register');
  await hydrated(page);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByLabel('Repeat the password').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/\/login\?registered=1$/);
}

/** Signs in through the sign-in page that is currently open. */
export async function signIn(page: Page, username: string, password = PASSWORD) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}
