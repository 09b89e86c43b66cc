// The production path: dist/server with APP_ENV=production behind Caddy over https
// (global-setup.ts). Caddy's test certificate is not trusted, so the project ignores it.
import { test, expect } from '@playwright/test';
import * as https from 'node:https';
import { PASSWORD, hydrated, registerByApi, registerByUi, signIn, uniqueUser } from './helpers';

test.use({ baseURL: process.env.HTTPS_BASE });

/** A form POST through the proxy from a client bound to `localAddress` (127.0.0.x). */
function postFrom(
  localAddress: string,
  path: string,
  form: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const url = new URL(path, process.env.HTTPS_BASE);
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        localAddress,
        rejectUnauthorized: false,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'content-length': Buffer.byteLength(body),
          ...headers,
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('over https: sign up, in and out, with Secure __Host- cookies and HSTS', async ({ page, context }) => {
  expect(process.env.HTTPS_BASE, 'global setup starts the https stack').toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  const first = await page.goto('/');
  expect(first?.headers()['strict-transport-security']).toMatch(/max-age=\d+/);

  const user = uniqueUser('tls');
  await registerByUi(page, user);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  await expect(page.getByTestId('profile-username')).toHaveText(user);

  const all = await context.cookies();
  expect(all.map((c) => c.name).sort()).toEqual([
    '__Host-auth_token',
    '__Host-clock',
    '__Host-device_token',
    '__Host-refresh_token',
  ]);
  // The reader's time zone and format, written by the page's script (so not HttpOnly), is a
  // __Host- cookie too: no sibling domain can plant one.
  const clock = all.find((c) => c.name === '__Host-clock')!;
  expect(clock.secure).toBe(true);
  expect(clock.httpOnly).toBe(false);
  expect(clock.path).toBe('/');
  expect(clock.domain).toBe('127.0.0.1');
  const cookies = all.filter((c) => c.name !== '__Host-clock');
  for (const cookie of cookies) {
    expect(cookie.secure).toBe(true);
    expect(cookie.httpOnly).toBe(true);
    expect(cookie.path).toBe('/');
    expect(cookie.domain).toBe('127.0.0.1'); // host-only: no Domain attribute
  }

  // Rendered on the server with the session, through the proxy.
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId('profile-username')).toHaveText(user);

  await page.getByRole('button', { name: 'Sign out' }).first().click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId('home-status')).toHaveText('You are not signed in.');
  // Only the device cookie stays: it says this browser signed in before, not that it is signed in
  // (and the clock: the browser's zone and format, nobody's session).
  expect((await context.cookies()).map((c) => c.name).sort()).toEqual(['__Host-clock', '__Host-device_token']);
  await page.goto('/profile');
  await expect(page).toHaveURL(/\/login\?next=%2Fprofile$/);
});

test('behind the proxy the sign-in limit keys on the client, not on the proxy', async ({ page, request }) => {
  const user = uniqueUser('tlsthr');
  await registerByApi(request, user);

  // A client at 127.0.0.9 guesses until it is refused; the address it writes into
  // X-Forwarded-For changes nothing (Caddy passes on the address it saw).
  const guess = (n: number) =>
    postFrom('127.0.0.9', '/api/login', { username: user, password: `wrong password ${n}` }, {
      'x-forwarded-for': `198.51.100.${n}`,
    });
  const statuses: number[] = [];
  for (let n = 0; n < 6; n++) statuses.push((await guess(n)).status);
  expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
  const right = await postFrom('127.0.0.9', '/api/login', { username: user, password: PASSWORD });
  expect(right.status).toBe(429);
  expect(JSON.parse(right.body).error).toBe('too_many_requests');

  // Another client through the same proxy is not held back by it.
  const other = await postFrom('127.0.0.10', '/api/login', { username: user, password: PASSWORD });
  expect(other.status, other.body).toBe(200);

  // Nor is the browser (127.0.0.1), with the right password.
  await page.goto('/login');
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/profile$/);
  await expect(page.getByTestId('profile-username')).toHaveText(user);
});
