// The security activity page: what happened to the account, newest first, in the reader's
// local time; one browser's sign-in shows on the other's page; "was this you?" leads to the
// sessions page; axe finds nothing to fix.
import AxeBuilder from '@axe-core/playwright';
import { Browser, BrowserContext, Page, test, expect } from '@playwright/test';
import { hydrated, registerByApi, signIn, uniqueUser } from './helpers';

/** A new browser signed in as `user` through the sign-in page, on its profile. */
async function signedIn(browser: Browser, user: string, timezoneId: string): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ timezoneId, locale: 'en-US' });
  const page = await context.newPage();
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  return { context, page };
}

test('a sign-in on one browser shows on the other one\'s activity page, in its local time', async ({ browser, request }) => {
  const user = uniqueUser('act');
  await registerByApi(request, user);
  const laptop = await signedIn(browser, user, 'Asia/Tokyo');
  // Someone tries the wrong password, then the phone signs in.
  const stranger = await browser.newContext();
  const guess = await stranger.newPage();
  await guess.goto('/login');
  await hydrated(guess);
  await signIn(guess, user, 'not the password at all');
  await expect(guess.getByRole('alert')).toBeVisible();
  await stranger.close();
  const phone = await signedIn(browser, user, 'America/New_York');

  // From the profile's link, as a person finds it.
  await laptop.page.goto('/profile');
  await hydrated(laptop.page);
  await laptop.page.getByRole('link', { name: 'Security activity' }).click();
  await expect(laptop.page).toHaveURL(/\/activity$/);
  await hydrated(laptop.page);
  const events = laptop.page.getByTestId('event');
  await expect(events).toHaveCount(3);
  // Newest first: the phone's sign-in, the failed guess, the laptop's own sign-in.
  await expect(events.nth(0)).toContainText('Signed in from a new device (password)');
  await expect(events.nth(0)).toContainText('Chrome');
  await expect(events.nth(1)).toContainText('A sign-in failed: wrong password');
  await expect(events.nth(2)).toContainText('Signed in from a new device (password)');
  // The times are the reader's: the page says no "UTC" once the browser told its zone.
  await laptop.page.reload();
  await hydrated(laptop.page);
  await expect(events.first()).not.toContainText('UTC');

  const results = await new AxeBuilder({ page: laptop.page }).analyze();
  expect(results.violations.map((v) => ({ rule: v.id, where: v.nodes.map((n) => n.target.join(' ')) }))).toEqual([]);

  // "Was this you?" leads to the sessions page, where the phone can be signed out.
  await laptop.page.getByRole('link', { name: 'Review your sessions' }).click();
  await expect(laptop.page).toHaveURL(/\/sessions$/);
  await expect(laptop.page.getByTestId('session')).toHaveCount(2);
  const other = laptop.page.getByTestId('session').filter({ hasNot: laptop.page.getByTestId('this-device') });
  await other.getByRole('button', { name: /^Sign out / }).click();
  await expect(laptop.page.getByTestId('session')).toHaveCount(1);
  await laptop.page.goto('/activity');
  await hydrated(laptop.page);
  await expect(events.first()).toContainText('Signed out from the sessions page');

  // The phone's page says it was signed out; signed out, /activity asks for a sign-in.
  await phone.page.goto('/activity');
  await expect(phone.page).toHaveURL(/\/login\?next=%2Factivity/);
  await laptop.context.close();
  await phone.context.close();
});
