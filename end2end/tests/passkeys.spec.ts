// Passkeys in a real browser: Chromium's own WebAuthn stack with a virtual authenticator
// (DevTools protocol: ctap2, internal, resident keys, user verification). WebAuthn needs a
// relying-party ID that is a domain, so these tests browse the server as `localhost` (its
// PUBLIC_URL is the loopback address, which the server takes as `localhost`), never 127.0.0.1.
import AxeBuilder from '@axe-core/playwright';
import { BrowserContext, CDPSession, Page, expect, test } from '@playwright/test';
import { PASSWORD, hydrated, registerByApi, signIn, uniqueUser } from './helpers';

const addr = process.env.LEPTOS_SITE_ADDR ?? '127.0.0.1:3000';
const local = `http://${addr.replace('127.0.0.1', 'localhost')}`;
test.use({ baseURL: local });

/** A page of a new context at `localhost`, with a virtual authenticator of its own. The
 * username field's autofill offer is switched off, so that the button is what signs in. */
async function withAuthenticator(context: BrowserContext): Promise<{ page: Page; client: CDPSession; authenticatorId: string }> {
  const page = await context.newPage();
  await page.addInitScript(() => {
    Object.defineProperty(PublicKeyCredential, 'isConditionalMediationAvailable', { value: async () => false });
  });
  const client = await context.newCDPSession(page);
  await client.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await client.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      ctap2Version: 'ctap2_1',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { page, client, authenticatorId };
}

async function signOut(page: Page) {
  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await expect(page).toHaveURL(/\/$/);
}

test('a passkey is added, signs in with no username typed, and once removed signs in no more', async ({ browser, request }) => {
  const user = uniqueUser('pk');
  await registerByApi(request, user);
  const context = await browser.newContext({ baseURL: local });
  const { page, client, authenticatorId } = await withAuthenticator(context);
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  await page.goto('/security');
  await hydrated(page);
  await page.getByLabel('Name for a new passkey (optional)').fill('Test laptop');
  await page.getByTestId('passkey-add').click();
  await expect(page).toHaveURL(/\/security\?passkey=added$/);
  await expect(page.getByTestId('passkey-name')).toHaveText(['Test laptop']);
  // The security page with a passkey listed (its rename and remove forms) passes axe.
  const axe = await new AxeBuilder({ page }).analyze();
  expect(axe.violations.map((v) => ({ rule: v.id, where: v.nodes.map((n) => n.target.join(' ')) }))).toEqual([]);
  const { credentials } = await client.send('WebAuthn.getCredentials', { authenticatorId });
  expect(credentials).toHaveLength(1);
  expect(credentials[0].isResidentCredential).toBe(true);
  await signOut(page);

  // No username typed: the passkey names the account.
  await page.goto('/login?next=%2Fsessions');
  await hydrated(page);
  await page.getByTestId('passkey-sign-in').click();
  await expect(page).toHaveURL(/\/sessions$/);
  await expect(page.getByTestId('session').first()).toContainText('Passkey');
  await expect(page.getByTestId('nav-user')).toContainText(user);

  // Another browser, whose authenticator holds no passkey of this site, cannot use it.
  const other = await browser.newContext({ baseURL: local });
  const { page: stranger } = await withAuthenticator(other);
  await stranger.goto('/login');
  await hydrated(stranger);
  await stranger.getByTestId('passkey-sign-in').click();
  await expect(stranger.locator('[data-passkey-error]')).toContainText('No passkey was used');
  await expect(stranger).toHaveURL(/\/login/);
  await other.close();

  // Renamed and removed (the passkey's own sign-in is a recent one).
  await page.goto('/security');
  await hydrated(page);
  await page.getByLabel('New name for Test laptop').fill('Old laptop');
  await page.getByRole('button', { name: 'Rename' }).click();
  await expect(page).toHaveURL(/passkey=renamed/);
  await expect(page.getByTestId('passkey-name')).toHaveText(['Old laptop']);
  await page.getByRole('button', { name: 'Remove Old laptop' }).click();
  await expect(page).toHaveURL(/passkey=removed/);
  await expect(page.getByTestId('passkey')).toHaveCount(0);
  await signOut(page);
  await page.goto('/login');
  await hydrated(page);
  await page.getByTestId('passkey-sign-in').click();
  await expect(page.locator('[data-passkey-error]')).toContainText('could not sign you in');
  await expect(page).toHaveURL(/\/login/);
  await context.close();
});

test('the security page asks an old session to confirm before adding a passkey, with the password', async ({ browser, request }) => {
  const user = uniqueUser('pkc');
  await registerByApi(request, user);
  const context = await browser.newContext({ baseURL: local });
  const { page } = await withAuthenticator(context);
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user, PASSWORD);
  await expect(page).toHaveURL(/\/profile$/);
  // Sent to confirm as an old session would be (the server decides; the page follows).
  await page.goto('/security?reauth=needed');
  await hydrated(page);
  await expect(page.getByTestId('reauth')).toBeVisible();
  await page.getByTestId('reauth').getByLabel('Your password').fill(PASSWORD);
  await page.getByTestId('reauth').getByRole('button', { name: 'Confirm' }).click();
  await expect(page).toHaveURL(/\/security\?reauth=ok$/);
  await expect(page.getByTestId('reauth-ok')).toBeVisible();
  await page.getByTestId('passkey-add').click();
  await expect(page).toHaveURL(/passkey=added/);
  await context.close();
});
