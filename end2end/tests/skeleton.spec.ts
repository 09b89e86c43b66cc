import { test, expect } from '@playwright/test';
import { hydrated } from './helpers';

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
