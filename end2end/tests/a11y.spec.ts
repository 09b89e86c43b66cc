// Every page, signed out and signed in, passes axe-core's accessibility checks with no
// violations (WCAG 2.x A and AA rules and axe's best practices).
import AxeBuilder from '@axe-core/playwright';
import { Page, test, expect } from '@playwright/test';
import { hydrated, registerByApi, signIn, uniqueUser } from './helpers';

async function expectNoViolations(page: Page, path: string) {
  await page.goto(path);
  await hydrated(page);
  const results = await new AxeBuilder({ page }).analyze();
  const found = results.violations.map((v) => ({
    rule: v.id,
    impact: v.impact,
    help: v.help,
    where: v.nodes.map((n) => n.target.join(' ')),
  }));
  expect(found, `axe on ${path}`).toEqual([]);
}

test('every page passes axe, signed out and signed in', async ({ page, request }) => {
  for (const path of ['/', '/login', '/register', '/no-such-page']) {
    await expectNoViolations(page, path);
  }
  const user = uniqueUser('axe');
  await registerByApi(request, user);
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  for (const path of ['/', '/profile', '/sessions', '/security', '/activity', '/account']) {
    await expectNoViolations(page, path);
  }
  // A form showing its error is checked too.
  await page.getByLabel('Current password').fill('not the password at all');
  await page.getByLabel('New password', { exact: true }).fill('some new password');
  await page.getByLabel('Repeat the new password').fill('some new password');
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.getByRole('alert')).toBeVisible();
  const results = await new AxeBuilder({ page }).analyze();
  expect(results.violations.map((v) => v.id)).toEqual([]);
});
