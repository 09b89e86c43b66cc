// Two-step sign-in in a real browser: turning on an authenticator app from /security (the key
// read from the page, codes computed here as an app would), signing in with a code once, a
// recovery code once and never again, the same steps with JavaScript off, and axe on each new
// page and form.
import AxeBuilder from '@axe-core/playwright';
import { Page, expect, test } from '@playwright/test';
import { PASSWORD, enrolTotpByApi, hydrated, registerByApi, signIn, totpCode, uniqueUser } from './helpers';

async function expectNoViolations(page: Page, what: string) {
  const results = await new AxeBuilder({ page }).analyze();
  const found = results.violations.map((v) => ({ rule: v.id, where: v.nodes.map((n) => n.target.join(' ')) }));
  expect(found, `axe on ${what}`).toEqual([]);
}

async function signOut(page: Page) {
  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await expect(page).toHaveURL(/\/$/);
}

/** The password step, then the code step with `code`. */
async function signInWithCode(page: Page, user: string, code: string) {
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page.getByLabel('Code')).toBeVisible();
  await page.getByLabel('Code').fill(code);
  await page.getByRole('button', { name: 'Continue' }).click();
}

test('turning on two-step sign-in: a code signs in once, a recovery code once', async ({ page, request }) => {
  const user = uniqueUser('totp');
  await registerByApi(request, user);
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  await page.getByRole('link', { name: 'Two-step sign-in' }).click();
  await expect(page).toHaveURL(/\/security$/);
  await hydrated(page);
  await expect(page.getByTestId('totp-state')).toHaveAttribute('data-state', 'off');
  await expectNoViolations(page, '/security (off)');
  await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const secret = (await page.getByTestId('totp-secret').textContent())!.trim();
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  await expect(page.getByRole('img', { name: 'QR code of the authenticator key' })).toBeVisible();
  await expectNoViolations(page, '/security (enrolling)');
  // A wrong code turns nothing on.
  await page.getByLabel('The 6-digit code the app shows now').fill('000000');
  await page.getByRole('button', { name: 'Turn on two-step sign-in' }).click();
  await expect(page.getByRole('alert')).toBeVisible();
  await page.getByLabel('The 6-digit code the app shows now').fill(totpCode(secret, -1));
  await page.getByRole('button', { name: 'Turn on two-step sign-in' }).click();
  const codes = page.getByTestId('recovery-codes').locator('code');
  await expect(codes).toHaveCount(10);
  const recovery = await codes.allTextContents();
  await expect(page.getByTestId('totp-state')).toHaveAttribute('data-state', 'on');
  await expect(page.getByTestId('recovery-left')).toHaveText('10 recovery codes left.');
  await expectNoViolations(page, '/security (on, codes shown)');
  await signOut(page);

  // The password alone no longer signs in: the code does, once.
  const code = totpCode(secret);
  await signInWithCode(page, user, code);
  await expect(page).toHaveURL(/\/profile$/);
  await expect(page.getByTestId('profile-username')).toHaveText(user);
  await page.goto('/sessions');
  await expect(page.getByTestId('session').first()).toContainText('Password and authenticator code');
  await signOut(page);
  await signInWithCode(page, user, code);
  await expect(page.getByRole('alert')).toContainText('not right, or was used already');
  await expect(page).toHaveURL(/\/two-step/);
  await expectNoViolations(page, 'the code step, refused');

  // A recovery code in its place, once.
  await page.getByLabel('Code').fill(recovery[0]);
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page).toHaveURL(/\/profile$/);
  await page.goto('/security');
  await expect(page.getByTestId('recovery-left')).toHaveText('9 recovery codes left.');
  await signOut(page);
  await signInWithCode(page, user, recovery[0]);
  await expect(page.getByRole('alert')).toContainText('not right, or was used already');
});

test('with JavaScript off, the code and recovery-code steps are form posts', async ({ browser, request }) => {
  const user = uniqueUser('nojs');
  await registerByApi(request, user);
  const { secret, codes } = await enrolTotpByApi(request, user);
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const passwordStep = async () => {
    await page.goto('/login?next=%2Fsessions');
    await page.getByLabel('Username').fill(user);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await expect(page).toHaveURL(/\/two-step\?next=%2Fsessions$/);
  };
  await passwordStep();
  await page.getByLabel('Code').fill('123456');
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page).toHaveURL(/error=invalid_code/);
  await expect(page.getByRole('alert')).toContainText('not right, or was used already');
  await page.getByLabel('Code').fill(totpCode(secret));
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page).toHaveURL(/\/sessions$/);
  // This browser's, and the API client's that turned two-step sign-in on.
  await expect(page.getByTestId('session')).toHaveCount(2);
  await context.clearCookies();
  await passwordStep();
  await page.getByLabel('Code').fill(codes[1]);
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page).toHaveURL(/\/sessions$/);
  // This browser's session (two started within a second are listed in either order).
  const mine = page.getByTestId('session').filter({ has: page.getByTestId('this-device') });
  await expect(mine).toContainText('Password and recovery code');
  // The code step without its cookie (another browser, or one that waited too long) starts over.
  await context.clearCookies();
  await page.goto('/two-step');
  await page.getByLabel('Code').fill(codes[2]);
  await page.getByRole('button', { name: 'Continue' }).click();
  await expect(page).toHaveURL(/error=sign_in_expired/);
  await expect(page.getByRole('alert')).toContainText('This sign-in is over');
  await expect(page.getByLabel('Password', { exact: true })).toBeVisible();
  await context.close();
});
