// Before any test: waits until the server cargo-leptos started answers /health, then starts two
// more servers from the release folder (dist/), each with a database of its own:
//   - the production stack of the `https` project: dist/server in APP_ENV=production behind
//     Caddy (deploy/serve-local.sh) on a free loopback port → HTTPS_BASE;
//   - the `sessions` project's server: dist/server with access tokens of a few seconds
//     (ACCESS_TTL) and a short REAUTH_WINDOW, so that tests can outlive them → SESSIONS_BASE.
// The returned teardown stops each by its PID (and process group), and fails the run if a server
// panicked.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';

import { SHORT_ACCESS_TTL, SHORT_REAUTH_WINDOW } from './tests/helpers';

const root = path.resolve(__dirname, '..');

/** Polls `check` for up to a minute, for as long as `alive` says the thing can still come up. */
async function until(what: string, check: () => Promise<boolean>, alive: () => boolean = () => true) {
  const deadline = Date.now() + 60_000;
  let last = '';
  while (Date.now() < deadline && alive()) {
    try {
      if (await check()) return;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not become healthy: ${last}`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** GET over https, accepting the proxy's test certificate. */
function httpsStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { rejectUnauthorized: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', reject);
  });
}

/** The environment of a server of our own: none of the development server's settings, but its
 * mail server (SMTP_URL, SMTP_CA_FILE, MAIL_FROM: scripts/e2e.sh's SMTP server, which keeps the
 * mails of all three). */
function ownEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['DATABASE_URL', 'DATA_DIR', 'LEPTOS_SITE_ADDR', 'JWT_SECRET', 'APP_ENV', 'COOKIE_SECURE', 'LOGIN_THROTTLE', 'PUBLIC_URL', 'TRUSTED_PROXIES']) {
    delete env[name];
  }
  return { ...env, RUST_LOG: 'warn', NO_COLOR: '1', ...extra };
}

interface Started {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<void>;
}

/** Starts `command` in a process group of its own, its output in `data/output.log`, and waits
 * until `healthy` says yes. */
async function start(
  name: string,
  data: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  healthy: () => Promise<boolean>,
): Promise<Started> {
  fs.rmSync(data, { recursive: true, force: true });
  fs.mkdirSync(data, { recursive: true });
  const log = path.join(data, 'output.log');
  const out = fs.openSync(log, 'w');
  const child = spawn(command, args, { env, stdio: ['ignore', out, out], detached: true, cwd: data });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const started = { name, child, log, exited };
  try {
    await until(name, healthy, () => running(child));
  } catch (e) {
    await stop(started);
    throw new Error(`${e}\n${fs.readFileSync(log, 'utf8')}`);
  }
  return started;
}

function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Stops a process group: SIGTERM, then SIGKILL after 15 s. */
async function stop({ child, exited }: Started) {
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-(child.pid ?? 0), s);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
  if (running(child)) signal('SIGKILL');
}

export default async function globalSetup() {
  const base = `http://${process.env.LEPTOS_SITE_ADDR ?? '127.0.0.1:3000'}`;
  await until(base, async () => (await fetch(`${base}/health`)).ok);

  const started: Started[] = [];
  try {
    const proxyPort = await freePort();
    const httpsBase = `https://127.0.0.1:${proxyPort}`;
    const data = path.join(root, 'target', 'e2e-https');
    started.push(
      await start(
        'the https stack',
        data,
        'bash',
        [path.join(root, 'deploy', 'serve-local.sh'), path.join(root, 'dist')],
        ownEnv({ PROXY_PORT: String(proxyPort), DATA_DIR: data, PUBLIC_URL: httpsBase }),
        async () => (await httpsStatus(`${httpsBase}/health`)) === 200,
      ),
    );
    process.env.HTTPS_BASE = httpsBase;

    const sessionsAddr = `127.0.0.1:${await freePort()}`;
    const sessionsData = path.join(root, 'target', 'e2e-sessions');
    started.push(
      await start(
        'the short-token server',
        sessionsData,
        path.join(root, 'dist', 'server'),
        [],
        ownEnv({
          LEPTOS_SITE_ADDR: sessionsAddr,
          DATABASE_URL: `sqlite://${sessionsData}/app.db`,
          DATA_DIR: sessionsData,
          ACCESS_TTL: `${SHORT_ACCESS_TTL}s`,
          // A sign-in older than this must be confirmed before a dangerous change (longer than
          // any other test of this server waits before changing a password).
          REAUTH_WINDOW: `${SHORT_REAUTH_WINDOW}s`,
          PUBLIC_URL: `http://${sessionsAddr}`,
        }),
        async () => (await fetch(`http://${sessionsAddr}/health`)).ok,
      ),
    );
    process.env.SESSIONS_BASE = `http://${sessionsAddr}`;
  } catch (e) {
    for (const s of started) await stop(s);
    throw e;
  }

  return async () => {
    for (const s of started) await stop(s);
    const panicked = started.filter((s) => /panicked at/.test(fs.readFileSync(s.log, 'utf8')));
    if (panicked.length > 0) {
      const logs = panicked.map((s) => `${s.name} (${s.log}):\n${fs.readFileSync(s.log, 'utf8')}`);
      throw new Error(`a server panicked during the tests:\n${logs.join('\n')}`);
    }
  };
}
