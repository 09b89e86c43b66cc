import { APIRequestContext, Page, expect } from '@playwright/test';
import * as OTPAuth from 'otpauth';

/** A username no other test (or earlier run on the same database) uses. */
export function uniqueUser(prefix = 'u'): string {
  const rand = Math.random().toString(36).slice(2, 8);
  return `${prefix}_${Date.now().toString(36)}_${rand}`.slice(0, 32);
}

export const PASSWORD = 'correct horse battery staple';

/** The access-token lifetime of the `sessions` project's server (global-setup.ts), in seconds. */
export const SHORT_ACCESS_TTL = 4;

/** That server's REAUTH_WINDOW, in seconds: a sign-in older than this is asked to confirm
 * before a dangerous change. */
export const SHORT_REAUTH_WINDOW = 25;

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
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

/** The code an authenticator app shows for `secret` (base32), `offset` steps from now. */
export function totpCode(secret: string, offset = 0): string {
  const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 });
  return totp.generate({ timestamp: Date.now() + offset * 30_000 });
}

/** Turns two-step sign-in on for `username` through the API, as a script would: the secret
 * and the recovery codes. The first code is the previous step's, so that the current one is
 * still unused. */
export async function enrolTotpByApi(request: APIRequestContext, username: string, password = PASSWORD) {
  const login = await request.post('/api/login', { form: { username, password } });
  expect(login.status(), await login.text()).toBe(200);
  const { access_token } = await login.json();
  const headers = { Authorization: `Bearer ${access_token}` };
  const begin = await request.post('/api/totp/begin', { headers, form: {} });
  expect(begin.status(), await begin.text()).toBe(200);
  const { secret } = await begin.json();
  const confirm = await request.post('/api/totp/confirm', { headers, form: { code: totpCode(secret, -1) } });
  expect(confirm.status(), await confirm.text()).toBe(200);
  const { codes } = await confirm.json();
  return { secret: secret as string, codes: codes as string[] };
}
