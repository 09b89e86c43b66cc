import { defineConfig } from '@playwright/test';

// `make e2e` (cargo leptos end-to-end) starts the release server on a free loopback port and
// passes it here through LEPTOS_SITE_ADDR.
const addr = process.env.LEPTOS_SITE_ADDR ?? '127.0.0.1:3000';

export default defineConfig({
  testDir: './tests',
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: true,
  workers: 2,
  // One retry: a test that fails once and then passes is reported as flaky (`make e2e` prints
  // its first failure) instead of failing the run. A test that fails twice fails the run.
  retries: 1,
  forbidOnly: !!process.env.CI,
  reporter: [['list']],
  globalSetup: './global-setup.ts',
  use: {
    baseURL: `http://${addr}`,
    trace: 'off',
    launchOptions: {
      // Debian's Chromium: Playwright's own browser download is not reachable here.
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
  projects: [
    {
      name: 'chromium',
      use: { browserName: 'chromium' },
      testIgnore: [/https\.spec\.ts$/, /sessions\.spec\.ts$/],
    },
    // Access tokens of a few seconds (global-setup.ts starts that server).
    {
      name: 'sessions',
      use: { browserName: 'chromium' },
      testMatch: /sessions\.spec\.ts$/,
    },
    // The release folder in production mode behind Caddy (global-setup.ts starts both).
    {
      name: 'https',
      use: { browserName: 'chromium', ignoreHTTPSErrors: true },
      testMatch: /https\.spec\.ts$/,
    },
  ],
});
