import { Browser, Page, test, expect } from '@playwright/test';
import { hydrated, registerByApi, signIn, uniqueUser } from './helpers';

/** A browser with this language and zone, signed in from its first page load: /login, then
 * /profile rendered in the browser (no second page load yet). */
async function signedInReader(browser: Browser, locale: string, timezoneId: string) {
  const context = await browser.newContext({ locale, timezoneId });
  const page = await context.newPage();
  const user = uniqueUser('clock');
  await registerByApi(context.request, user);
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  return { context, page };
}

/** Records any change to a <time> element once the server's HTML is parsed (hydration runs
 * after that: the WASM is a module script). */
async function watchTimes(page: Page) {
  await page.addInitScript(() => {
    (window as any).timeChanges = [];
    document.addEventListener('DOMContentLoaded', () => {
      new MutationObserver((records) => {
        for (const r of records) {
          const node = r.target as Node;
          const el = node.nodeType === Node.ELEMENT_NODE ? (node as Element) : node.parentElement;
          const touched = [el, ...Array.from(r.addedNodes), ...Array.from(r.removedNodes)].some(
            (n) => n && ((n as Element).closest?.('time') || (n as Element).querySelector?.('time')),
          );
          if (touched) (window as any).timeChanges.push(`${r.type}: ${el?.textContent}`);
        }
      }).observe(document, { subtree: true, childList: true, characterData: true });
    });
  });
}

test('the first visit shows UTC, labelled, and remembers the reader\'s zone and format for the next page load', async ({ browser }) => {
  const { context, page } = await signedInReader(browser, 'de-DE', 'Europe/Berlin');
  // Still the first page load: UTC, and it says so.
  await expect(page.getByTestId('profile-expires')).toContainText('UTC');

  const cookie = (await context.cookies()).find((c) => c.name === 'clock');
  expect(cookie, 'the clock cookie after the first visit').toBeTruthy();
  expect(decodeURIComponent(cookie!.value)).toBe('1|Europe/Berlin|%-d.%-m.%Y, %-H:%M||');
  expect(cookie!.sameSite).toBe('Lax');
  await context.close();
});

for (const [locale, timezoneId, pattern] of [
  ['de-DE', 'Europe/Berlin', /^\d{1,2}\.\d{1,2}\.\d{4}, \d{1,2}:\d{2}$/],
  // Chrome writes a narrow no-break space before AM and PM.
  ['en-US', 'America/New_York', /^\d{1,2}\/\d{1,2}\/\d{4}, \d{1,2}:\d{2}\s(AM|PM)$/],
  ['en-GB', 'Asia/Kolkata', /^\d{2}\/\d{2}\/\d{4}, \d{1,2}:\d{2}$/],
] as const) {
  test(`a reader in ${timezoneId} (${locale}) sees local times from the server's first paint, unchanged by hydration`, async ({ browser }) => {
    const { context, page } = await signedInReader(browser, locale, timezoneId);
    await watchTimes(page);
    await page.reload();
    await hydrated(page);

    const shown = (await page.getByTestId('profile-expires').textContent())!.trim();
    expect(shown).toMatch(pattern);
    expect(shown).not.toContain('UTC');
    // What the browser itself writes for that instant, in that zone and language.
    const iso = await page.getByTestId('profile-expires').locator('time').getAttribute('datetime');
    const expected = await page.evaluate(
      (iso) =>
        new Intl.DateTimeFormat(undefined, {
          year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: '2-digit',
          numberingSystem: 'latn', calendar: 'gregory',
        }).format(new Date(iso!)),
      iso,
    );
    expect(shown).toBe(expected);

    // The server's HTML already had it, and hydration changed no <time>.
    const html = await (await context.request.get('/profile')).text();
    expect(html).toContain(shown);
    expect(await page.evaluate(() => (window as any).timeChanges)).toEqual([]);

    // Rendered again in the browser alone (away and back, without a page load): the same words.
    // (The home page: the account and sessions pages are loaded from the server.)
    await page.getByRole('link', { name: 'Auth app' }).click();
    await expect(page).toHaveURL(/\/$/);
    await page.goBack();
    await expect(page).toHaveURL(/\/profile$/);
    await expect(page.getByTestId('profile-expires')).toHaveText(shown);
    // (and the watcher does see what the browser renders: it is not blind)
    expect((await page.evaluate(() => (window as any).timeChanges)).length).toBeGreaterThan(0);

    // The sessions page writes its times with the same clock.
    await page.goto('/sessions');
    const session = page.getByTestId('session').first();
    await expect(session).not.toContainText('UTC');
    const sessionText = (await session.textContent())!;
    expect(sessionText).toMatch(new RegExp(pattern.source.slice(1, -1)));
    await context.close();
  });
}

test('a clock cookie the server cannot use is dropped, and the page is written in UTC on both sides', async ({ browser }) => {
  const { context, page } = await signedInReader(browser, 'en-US', 'America/New_York');
  await context.addCookies([
    { name: 'clock', value: encodeURIComponent('1|Mars/Olympus_Mons|%Y-%m-%d %H:%M||'), url: page.url() },
  ]);
  await watchTimes(page);
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId('profile-expires')).toContainText('UTC');
  expect(await page.evaluate(() => (window as any).timeChanges)).toEqual([]);
  await context.close();
});
