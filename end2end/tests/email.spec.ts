// E-mail in the browser, with the mails the server really sent (through scripts/e2e.sh's SMTP
// server, which refuses a mail before STARTTLS: every mail read here came over TLS). An address
// is confirmed through its mailed link; a forgotten password is reset through one, and every
// other session ends; the forgot form tells nobody whether an account exists; a mail scanner's
// GET spends nothing; used, expired and forged links each get their page; the account's address
// is changed through the new address's mail; the forms work without JavaScript; axe finds no
// violation on the new pages; and the mails themselves are rendered and looked at.
//
// Each test speaks as a client address of its own (X-Forwarded-For: the server under test trusts
// its loopback proxy), as people behind one proxy do, so that the per-client limit on reset
// links (10, then 2 a minute) counts each test apart, retries included.
import AxeBuilder from '@axe-core/playwright';
import { APIRequestContext, Browser, BrowserContext, Page, TestInfo, test as base, expect } from '@playwright/test';
import { PASSWORD, hydrated, signIn, uniqueUser } from './helpers';
import { Mail, lastMail, linkIn, mailsSince, mailsTo, uniqueAddress, waitForMail } from './mail';

/** A client address of its own: 10.x.y.z, at random. */
function clientAddress(): string {
  const octet = () => 1 + Math.floor(Math.random() * 254);
  return `10.${octet()}.${octet()}.${octet()}`;
}

// The default page, context and request of each test come from its own client address.
const test = base.extend({
  extraHTTPHeaders: async ({}, use) => {
    await use({ 'X-Forwarded-For': clientAddress() });
  },
});

const NEW_PASSWORD = 'a brand new passphrase 42';

const SUBJECT = {
  verify: /^Confirm your e-mail address/,
  verifyNew: /^Confirm your new e-mail address/,
  inUse: /tried to sign up .*with your e-mail address/,
  reset: /^Reset your .*password$/,
  changed: /password was changed$/,
  newSignIn: /^New sign-in to your /,
  changing: /e-mail address of your .* is being changed$/,
  deleted: /account was deleted$/,
};

/** Another browser (a context of its own: its own cookies), from another client address. */
async function newBrowser(browser: Browser, baseURL: string | undefined, javaScriptEnabled = true): Promise<BrowserContext> {
  return browser.newContext({
    baseURL,
    javaScriptEnabled,
    extraHTTPHeaders: { 'X-Forwarded-For': clientAddress() },
  });
}

/** Creates an account with an address through the HTTP API. */
async function registerWithAddress(request: APIRequestContext, username: string, address: string, password = PASSWORD) {
  const res = await request.post('/api/register', { form: { username, password, email: address } });
  expect(res.status(), await res.text()).toBe(200);
}

/** An account whose address is confirmed (through the API, with the link of its mail). */
async function verifiedAccount(request: APIRequestContext, prefix: string): Promise<{ username: string; address: string }> {
  const username = uniqueUser(prefix);
  const address = uniqueAddress(prefix);
  await registerWithAddress(request, username, address);
  const link = await linkIn(address, SUBJECT.verify);
  const token = new URL(link).searchParams.get('token') ?? '';
  const res = await request.post('/api/email/verify', { form: { token } });
  expect(res.status(), await res.text()).toBe(200);
  return { username, address };
}

/** Signs in through the sign-in page and lands on the profile. */
async function signInAt(page: Page, login: string, password = PASSWORD) {
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, login, password);
  await expect(page).toHaveURL(/\/profile$/);
}

/** Asks for a reset link on /forgot (open already) and returns what the page then says. */
async function askForReset(page: Page, login: string): Promise<string> {
  await page.getByLabel('Username or e-mail address').fill(login);
  await page.getByRole('button', { name: 'Send me a link' }).click();
  await expect(page).toHaveURL(/\/forgot\?sent=1$/);
  await expect(page.getByTestId('reset-requested')).toBeVisible();
  return page.locator('main').innerText();
}

/** Sets a new password on the reset page (open already). */
async function setPassword(page: Page, password: string) {
  await page.getByLabel('New password', { exact: true }).fill(password);
  await page.getByLabel('Repeat the new password').fill(password);
  await page.getByRole('button', { name: 'Set the new password' }).click();
}

/** Whether `login` and `password` sign in, tried from a browser of its own. */
async function signsIn(browser: Browser, baseURL: string | undefined, login: string, password: string): Promise<boolean> {
  const context = await newBrowser(browser, baseURL);
  try {
    const res = await context.request.post('/api/login', { form: { username: login, password } });
    return res.ok();
  } finally {
    await context.close();
  }
}

/** The address section of /account (open already). */
function addressSection(page: Page) {
  return page.locator('section[aria-labelledby="email-heading"]');
}

test('an address given at sign-up is confirmed by the button of the page its mail opens, and then signs in', async ({ page, browser, baseURL }) => {
  const username = uniqueUser('signup');
  const address = uniqueAddress('signup');
  await page.goto('/register');
  await hydrated(page);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('E-mail address').fill(address);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByLabel('Repeat the password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/\/login\?registered=1$/);

  const mail = await waitForMail(address, { subject: SUBJECT.verify });
  expect(mail.text).toContain(username);
  expect(mail.link).toMatch(new RegExp(`^${baseURL}/verify\\?token=ml1\\.`));

  // Not yet: the address is unconfirmed, and signs nobody in.
  await signIn(page, username);
  await expect(page).toHaveURL(/\/profile$/);
  await page.goto('/account');
  await expect(page.getByTestId('email-state')).toHaveAttribute('data-state', 'unverified');
  expect(await signsIn(browser, baseURL, address, PASSWORD)).toBe(false);

  // Opening the link shows the page and changes nothing.
  await page.goto(mail.link!);
  await hydrated(page);
  await expect(page.getByTestId('address')).toHaveText(address);
  await page.goto('/account');
  await expect(page.getByTestId('email-state')).toHaveAttribute('data-state', 'unverified');

  await page.goto(mail.link!);
  await hydrated(page);
  await page.getByRole('button', { name: 'Confirm this address' }).click();
  await expect(page).toHaveURL(/\/verify\?confirmed=1$/);
  await expect(page.getByTestId('address-confirmed')).toBeVisible();

  await page.goto('/account');
  await expect(page.getByTestId('email-state')).toHaveAttribute('data-state', 'verified');
  await expect(page.getByTestId('email-state')).toContainText(address);
  await expect(page.getByTestId('email-pending')).toHaveCount(0);

  // The address now signs in, in the one field of the sign-in page.
  const other = await newBrowser(browser, baseURL);
  const otherPage = await other.newPage();
  await signInAt(otherPage, address);
  await expect(otherPage.getByTestId('profile-username')).toHaveText(username);
  await other.close();
});

test('a forgotten password is reset through the mailed link: the other browser is signed out, the old password is dead', async ({ browser, baseURL, request }) => {
  const { username, address } = await verifiedAccount(request, 'forgot');

  const a = await newBrowser(browser, baseURL);
  const pageA = await a.newPage();
  await signInAt(pageA, username);

  const b = await newBrowser(browser, baseURL);
  const pageB = await b.newPage();
  await pageB.goto('/login');
  await hydrated(pageB);
  await pageB.getByTestId('forgot-link').click();
  await expect(pageB).toHaveURL(/\/forgot$/);
  await hydrated(pageB);
  const before = lastMail();
  await askForReset(pageB, address);
  await expect(pageB.getByTestId('reset-requested')).toHaveText(
    /^If that is the username or the confirmed e-mail address of an account, a link to set a new password is on its way/,
  );

  const mail = await waitForMail(address, { subject: SUBJECT.reset, after: before });
  expect(mail.link).toMatch(new RegExp(`^${baseURL}/reset\\?token=ml1\\.`));
  await pageB.goto(mail.link!);
  await hydrated(pageB);
  await setPassword(pageB, NEW_PASSWORD);
  await expect(pageB).toHaveURL(/\/profile(\?reset=1)?$/);
  await expect(pageB.getByTestId('profile-username')).toHaveText(username);

  // Every other session ended: A's next request finds it signed out.
  await pageA.goto('/profile');
  await expect(pageA).toHaveURL(/\/login\?/);

  expect(await signsIn(browser, baseURL, username, PASSWORD)).toBe(false);
  expect(await signsIn(browser, baseURL, username, NEW_PASSWORD)).toBe(true);
  expect(await signsIn(browser, baseURL, address, NEW_PASSWORD)).toBe(true);

  // And the address is told.
  await waitForMail(address, { subject: SUBJECT.changed, after: before });
  await a.close();
  await b.close();
});

test('an unknown address, an unknown username and a known address see the same page, and only the known one gets a mail', async ({ browser, baseURL, request }) => {
  const known = await verifiedAccount(request, 'same');
  const unknownAddress = uniqueAddress('nobody');
  const unknownUser = uniqueUser('nobody');
  const before = lastMail();

  const seen: string[] = [];
  for (const login of [unknownAddress, unknownUser, known.address]) {
    const context = await newBrowser(browser, baseURL);
    const page = await context.newPage();
    await page.goto('/forgot');
    await hydrated(page);
    seen.push(await askForReset(page, login));
    await context.close();
  }
  expect(seen[1]).toBe(seen[0]);
  expect(seen[2]).toBe(seen[0]);

  // The known address's mail was asked for last; once it is here, and a moment more, the
  // unknown ones had all the time they needed to get one.
  await waitForMail(known.address, { subject: SUBJECT.reset, after: before });
  await new Promise((r) => setTimeout(r, 1000));
  expect(await mailsTo(unknownAddress)).toEqual([]);
  // A username has no mailbox of its own: no mail since then names it.
  const naming = (await mailsSince(before)).filter((m) => m.text.includes(unknownUser) || m.html.includes(unknownUser));
  expect(naming.map((m) => m.subject)).toEqual([]);
});

test('opening a reset link (twice, as a mail scanner would) spends nothing', async ({ page, request, browser, baseURL }) => {
  const { username, address } = await verifiedAccount(request, 'scan');
  await page.goto('/forgot');
  await hydrated(page);
  const before = lastMail();
  await askForReset(page, address);
  const link = await linkIn(address, SUBJECT.reset, before);

  // A scanner that fetches without a browser, and a browser, each twice.
  for (let i = 0; i < 2; i++) {
    const res = await request.get(link);
    expect(res.status()).toBe(200);
  }
  const scanner = await newBrowser(browser, baseURL);
  const scanned = await scanner.newPage();
  for (let i = 0; i < 2; i++) {
    await scanned.goto(link);
    await hydrated(scanned);
    await expect(scanned.getByRole('button', { name: 'Set the new password' })).toBeVisible();
  }
  await scanner.close();
  expect(await signsIn(browser, baseURL, username, PASSWORD)).toBe(true);

  // The link still works, once.
  await page.goto(link);
  await hydrated(page);
  await setPassword(page, NEW_PASSWORD);
  await expect(page).toHaveURL(/\/profile(\?reset=1)?$/);
  expect(await signsIn(browser, baseURL, username, NEW_PASSWORD)).toBe(true);
});

test('a used link, an expired link and a forged one each get their page', async ({ page, request, browser, baseURL }) => {
  // Used: spent, then opened again.
  const used = await verifiedAccount(request, 'used');
  await page.goto('/forgot');
  await hydrated(page);
  let before = lastMail();
  await askForReset(page, used.address);
  const usedLink = await linkIn(used.address, SUBJECT.reset, before);
  await page.goto(usedLink);
  await hydrated(page);
  await setPassword(page, NEW_PASSWORD);
  await expect(page).toHaveURL(/\/profile(\?reset=1)?$/);
  await page.goto(usedLink);
  await hydrated(page);
  await expect(page.getByTestId('dead-link')).toHaveAttribute('data-state', 'used');
  await expect(page.getByRole('link', { name: 'Ask for a new link' })).toHaveAttribute('href', '/forgot');
  let res = await request.post('/api/password/reset', { form: { token: new URL(usedLink).searchParams.get('token')!, password: 'yet another passphrase' } });
  expect(res.status()).toBe(410);
  expect((await res.json()).error).toBe('link_used');

  // Expired: the password was changed after the link was sent, which kills it as time does.
  const stale = await verifiedAccount(request, 'stale');
  const signedIn = await newBrowser(browser, baseURL);
  const account = await signedIn.newPage();
  await signInAt(account, stale.username);
  await page.goto('/forgot');
  await hydrated(page);
  before = lastMail();
  await askForReset(page, stale.address);
  const staleLink = await linkIn(stale.address, SUBJECT.reset, before);
  await account.goto('/account');
  await hydrated(account);
  await account.getByLabel('Current password').fill(PASSWORD);
  await account.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
  await account.getByLabel('Repeat the new password').fill(NEW_PASSWORD);
  await account.getByRole('button', { name: 'Change password' }).click();
  await expect(account.getByTestId('password-changed')).toBeVisible();
  await signedIn.close();
  await page.goto(staleLink);
  await hydrated(page);
  await expect(page.getByTestId('dead-link')).toHaveAttribute('data-state', 'expired');
  res = await request.post('/api/password/reset', { form: { token: new URL(staleLink).searchParams.get('token')!, password: 'yet another passphrase' } });
  expect(res.status()).toBe(410);
  expect((await res.json()).error).toBe('link_expired');
  expect(await signsIn(browser, baseURL, stale.username, NEW_PASSWORD)).toBe(true);

  // Forged: a token of the right shape that nobody issued, and one cut short.
  const forged = `ml1.${'A'.repeat(43)}`;
  for (const path of [`/reset?token=${forged}`, '/reset?token=ml1.abc', '/reset', `/verify?token=${forged}`, '/verify?token=nonsense']) {
    await page.goto(path);
    await hydrated(page);
    await expect(page.getByTestId('dead-link'), path).toHaveAttribute('data-state', 'invalid');
  }
  res = await request.post('/api/password/reset', { form: { token: forged, password: 'yet another passphrase' } });
  expect(res.status()).toBe(404);
  expect((await res.json()).error).toBe('link_invalid');
});

test('the address is changed from the account page through the new address\'s mail, and the old address is told', async ({ page, request }) => {
  const { username, address: oldAddress } = await verifiedAccount(request, 'move');
  const newAddress = uniqueAddress('moved');
  await signInAt(page, username);
  // The account page is loaded from the server (it shows what the server read): Back from it
  // returns to the profile, not to a second copy of itself.
  await page.getByRole('link', { name: 'Password and account' }).click();
  await expect(page).toHaveURL(/\/account$/);
  await hydrated(page);
  await page.goBack();
  await expect(page).toHaveURL(/\/profile$/);
  await page.goForward();
  await expect(page).toHaveURL(/\/account$/);
  await hydrated(page);
  const section = addressSection(page);
  await expect(section.getByTestId('email-state')).toHaveAttribute('data-state', 'verified');
  await expect(section.getByTestId('email-state')).toContainText(oldAddress);

  const before = lastMail();
  await section.getByLabel('New e-mail address').fill(newAddress);
  await section.getByLabel('Your password').fill(PASSWORD);
  await section.getByRole('button', { name: 'Send a confirming link' }).click();
  await expect(page).toHaveURL(/\/account\?email=sent$/);
  await expect(section.getByTestId('email-notice')).toBeVisible();
  // The old address stays the account's until the new one is confirmed.
  await expect(section.getByTestId('email-state')).toHaveAttribute('data-state', 'verified');
  await expect(section.getByTestId('email-state')).toContainText(oldAddress);
  await expect(section.getByTestId('email-pending')).toContainText(newAddress);

  const notice = await waitForMail(oldAddress, { subject: SUBJECT.changing, after: before });
  expect(notice.link).toBeUndefined();
  const link = await linkIn(newAddress, SUBJECT.verifyNew, before);
  await page.goto(link);
  await hydrated(page);
  await expect(page.getByTestId('address')).toHaveText(newAddress);
  await page.getByRole('button', { name: 'Confirm this address' }).click();
  await expect(page.getByTestId('address-confirmed')).toBeVisible();

  await page.goto('/account');
  await hydrated(page);
  await expect(section.getByTestId('email-state')).toHaveAttribute('data-state', 'verified');
  await expect(section.getByTestId('email-state')).toContainText(newAddress);
  await expect(section.getByTestId('email-pending')).toHaveCount(0);
});

test('without JavaScript, the forgot and reset forms work as plain form posts', async ({ browser, baseURL, request }) => {
  const { username, address } = await verifiedAccount(request, 'nojs');
  const context = await newBrowser(browser, baseURL, false);
  const page = await context.newPage();
  await page.goto('/login');
  await page.getByTestId('forgot-link').click();
  await expect(page).toHaveURL(/\/forgot$/);
  const before = lastMail();
  await askForReset(page, username);
  const link = await linkIn(address, SUBJECT.reset, before);
  await page.goto(link);
  await setPassword(page, NEW_PASSWORD);
  await expect(page).toHaveURL(/\/profile(\?reset=1)?$/);
  await expect(page.getByTestId('profile-username')).toHaveText(username);
  await context.close();
  expect(await signsIn(browser, baseURL, username, NEW_PASSWORD)).toBe(true);
});

async function expectNoViolations(page: Page, what: string) {
  const results = await new AxeBuilder({ page }).analyze();
  const found = results.violations.map((v) => ({
    rule: v.id,
    impact: v.impact,
    help: v.help,
    where: v.nodes.map((n) => n.target.join(' ')),
  }));
  expect(found, `axe on ${what}`).toEqual([]);
}

test('axe finds no violation on the pages of e-mail, live links and dead ones', async ({ page, request }) => {
  // An account whose address waits for its link: a live confirming link, and the account page
  // with its address unconfirmed.
  const username = uniqueUser('axe');
  const address = uniqueAddress('axe');
  await registerWithAddress(request, username, address);
  const verifyLink = await linkIn(address, SUBJECT.verify);
  // And one with a confirmed address, for a live reset link.
  const resettable = await verifiedAccount(request, 'axereset');
  await page.goto('/forgot');
  await hydrated(page);
  await expectNoViolations(page, '/forgot');
  const before = lastMail();
  await askForReset(page, resettable.address);
  await expectNoViolations(page, '/forgot after asking');
  const resetLink = await linkIn(resettable.address, SUBJECT.reset, before);

  const pages: [string, string][] = [
    [resetLink, '/reset (live)'],
    [`/reset?token=ml1.${'A'.repeat(43)}`, '/reset (invalid)'],
    [verifyLink, '/verify (live)'],
    ['/verify?token=nonsense', '/verify (invalid)'],
    ['/verify?confirmed=1', '/verify (confirmed)'],
  ];
  for (const [url, what] of pages) {
    await page.goto(url);
    await hydrated(page);
    await expectNoViolations(page, what);
  }
  // A form showing its error.
  await page.goto(resetLink);
  await hydrated(page);
  await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
  await page.getByLabel('Repeat the new password').fill('not the same passphrase');
  await page.getByRole('button', { name: 'Set the new password' }).click();
  await expect(page.getByRole('alert')).toBeVisible();
  await expectNoViolations(page, '/reset with an error');

  // Spent: the used page.
  await setPassword(page, NEW_PASSWORD);
  await expect(page).toHaveURL(/\/profile(\?reset=1)?$/);
  await page.goto(resetLink);
  await hydrated(page);
  await expect(page.getByTestId('dead-link')).toHaveAttribute('data-state', 'used');
  await expectNoViolations(page, '/reset (used)');

  // The account page with its address section: unconfirmed, then a change waiting.
  await page.context().clearCookies();
  await signInAt(page, username);
  await page.goto('/account');
  await hydrated(page);
  await expect(page.getByTestId('email-state')).toHaveAttribute('data-state', 'unverified');
  await expectNoViolations(page, '/account (address unconfirmed)');
  await page.goto(verifyLink);
  await hydrated(page);
  await page.getByRole('button', { name: 'Confirm this address' }).click();
  await expect(page.getByTestId('address-confirmed')).toBeVisible();
  await page.goto('/account');
  await hydrated(page);
  const section = addressSection(page);
  await section.getByLabel('New e-mail address').fill(uniqueAddress('axemoved'));
  await section.getByLabel('Your password').fill(PASSWORD);
  await section.getByRole('button', { name: 'Send a confirming link' }).click();
  await expect(section.getByTestId('email-pending')).toBeVisible();
  await expectNoViolations(page, '/account (a change waiting)');
});

/** Renders a mail's HTML in Chromium, keeps screenshots of it (a phone's width and a desktop
 * client's) under the test's output, and checks that it loads nothing from anywhere and holds
 * the links of its text. */
async function lookAt(browser: Browser, mail: Mail, name: string, testInfo: TestInfo) {
  expect(mail.html, `${name}: an HTML part`).not.toBe('');
  expect(mail.text, `${name}: a text part`).not.toBe('');
  expect(mail.from).toBe('noreply@authapp.test');
  // Nothing it could fetch: no images, styles, scripts or fonts from elsewhere (a tracking pixel
  // or a remote image tells the sender when and where the mail was read).
  expect(mail.html, `${name}: src=`).not.toMatch(/\bsrc\s*=/i);
  expect(mail.html, `${name}: <link>`).not.toMatch(/<link\b/i);
  expect(mail.html, `${name}: url(`).not.toMatch(/url\s*\(/i);
  expect(mail.html, `${name}: @import`).not.toMatch(/@import/i);
  for (const link of mail.links) {
    expect(mail.html, `${name}: the link ${link}`).toContain(`href="${link.replace(/&/g, '&amp;')}"`);
  }

  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const fetched: string[] = [];
  await page.route('**/*', (route) => {
    fetched.push(route.request().url());
    return route.abort();
  });
  for (const [width, height, label] of [
    [390, 844, 'phone'],
    [900, 700, 'desktop'],
  ] as const) {
    await page.setViewportSize({ width, height });
    await page.setContent(mail.html, { waitUntil: 'load' });
    const file = testInfo.outputPath(`mail-${name}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true });
    await testInfo.attach(`mail-${name}-${label}`, { path: file, contentType: 'image/png' });
    // Readable on a phone: nothing wider than the screen.
    if (label === 'phone') {
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      expect(wide, `${name}: its width on a phone`).toBeLessThanOrEqual(width);
    }
  }
  expect(fetched, `${name}: what rendering it fetched`).toEqual([]);
  if (mail.link) {
    await expect(page.locator(`a[href="${mail.link}"]`).first()).toBeVisible();
  }
  await context.close();
}

test('the mails, rendered in Chromium: each one in text and HTML, with its link and nothing fetched', async ({ browser, baseURL, request }, testInfo) => {
  const username = uniqueUser('look');
  const address = uniqueAddress('look');
  await registerWithAddress(request, username, address);
  const verify = await waitForMail(address, { subject: SUBJECT.verify });
  expect(verify.link).toBeDefined();
  await lookAt(browser, verify, 'verify', testInfo);
  let res = await request.post('/api/email/verify', { form: { token: new URL(verify.link!).searchParams.get('token')! } });
  expect(res.status()).toBe(200);

  // A sign-in from a browser this account never saw.
  let before = lastMail();
  const device = await newBrowser(browser, baseURL);
  const devicePage = await device.newPage();
  await signInAt(devicePage, username);
  const newSignIn = await waitForMail(address, { subject: SUBJECT.newSignIn, after: before });
  expect(newSignIn.links.some((l) => l === `${baseURL}/sessions`)).toBe(true);
  await lookAt(browser, newSignIn, 'new-sign-in', testInfo);

  before = lastMail();
  res = await request.post('/api/password/forgot', { form: { login: address } });
  expect(res.status()).toBe(200);
  const reset = await waitForMail(address, { subject: SUBJECT.reset, after: before });
  expect(reset.link).toBeDefined();
  await lookAt(browser, reset, 'reset', testInfo);
  res = await request.post('/api/password/reset', { form: { token: new URL(reset.link!).searchParams.get('token')!, password: NEW_PASSWORD } });
  expect(res.status(), await res.text()).toBe(200);
  const changed = await waitForMail(address, { subject: SUBJECT.changed, after: before });
  await lookAt(browser, changed, 'password-changed', testInfo);

  // Someone signs up with this address: its owner is told, and the other account is not named.
  before = lastMail();
  const intruder = uniqueUser('intruder');
  const elsewhere = await newBrowser(browser, baseURL);
  await registerWithAddress(elsewhere.request, intruder, address);
  await elsewhere.close();
  const inUse = await waitForMail(address, { subject: SUBJECT.inUse, after: before });
  expect(inUse.text).not.toContain(intruder);
  expect(inUse.link).toBeUndefined();
  await lookAt(browser, inUse, 'address-in-use', testInfo);

  // The address is being changed: the old one is told. (The reset ended the other browser's
  // session: a new one signs in with the new password.)
  await device.close();
  const again = await newBrowser(browser, baseURL);
  const page = await again.newPage();
  await signInAt(page, username, NEW_PASSWORD);
  await page.goto('/account');
  await hydrated(page);
  before = lastMail();
  await addressSection(page).getByLabel('New e-mail address').fill(uniqueAddress('looknew'));
  await addressSection(page).getByLabel('Your password').fill(NEW_PASSWORD);
  await addressSection(page).getByRole('button', { name: 'Send a confirming link' }).click();
  await expect(page).toHaveURL(/\/account\?email=sent$/);
  const changing = await waitForMail(address, { subject: SUBJECT.changing, after: before });
  await lookAt(browser, changing, 'address-changing', testInfo);

  // The account is deleted: its (still confirmed) address is told.
  before = lastMail();
  await page.locator('#delete_password').fill(NEW_PASSWORD);
  await page.getByRole('button', { name: 'Delete my account' }).click();
  await expect(page).toHaveURL(/\?deleted=1$/);
  const deleted = await waitForMail(address, { subject: SUBJECT.deleted, after: before });
  await lookAt(browser, deleted, 'account-deleted', testInfo);
  await again.close();
});
