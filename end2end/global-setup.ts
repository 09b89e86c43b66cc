// Before any test: waits until the server cargo-leptos started answers /health, and starts the
// production stack of the https tests — the release folder (dist/) in APP_ENV=production behind
// Caddy (deploy/serve-local.sh) on a free loopback port. Its base URL reaches the tests as
// HTTPS_BASE; the returned teardown stops it by its PID, and fails the run if the server panicked.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';

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

export default async function globalSetup() {
  const base = `http://${process.env.LEPTOS_SITE_ADDR ?? '127.0.0.1:3000'}`;
  await until(base, async () => (await fetch(`${base}/health`)).ok);

  const data = path.join(root, 'target', 'e2e-https');
  fs.rmSync(data, { recursive: true, force: true });
  fs.mkdirSync(data, { recursive: true });
  const log = path.join(data, 'output.log');
  const out = fs.openSync(log, 'w');
  const port = await freePort();
  // Not the development server's settings (make e2e sets them for cargo leptos): the stack
  // gets a database and secret of its own in `data`.
  const env = { ...process.env };
  for (const name of ['DATABASE_URL', 'DATA_DIR', 'LEPTOS_SITE_ADDR', 'JWT_SECRET', 'APP_ENV', 'LOGIN_THROTTLE']) {
    delete env[name];
  }
  const stack = spawn('bash', [path.join(root, 'deploy', 'serve-local.sh'), path.join(root, 'dist')], {
    env: { ...env, PROXY_PORT: String(port), DATA_DIR: data, RUST_LOG: 'warn', NO_COLOR: '1' },
    stdio: ['ignore', out, out],
    // A process group of its own: the teardown can stop the script and both servers at once.
    detached: true,
  });
  const exited = new Promise<void>((resolve) => stack.once('exit', () => resolve()));
  const httpsBase = `https://127.0.0.1:${port}`;
  const stop = (signal: NodeJS.Signals) => {
    try {
      process.kill(-(stack.pid ?? 0), signal);
    } catch {
      // already gone
    }
  };
  const running = () => stack.exitCode === null && stack.signalCode === null;
  try {
    await until(httpsBase, async () => {
      if (!running()) return Promise.reject(new Error('stopped'));
      return (await httpsStatus(`${httpsBase}/health`)) === 200;
    }, running);
  } catch (e) {
    stop('SIGTERM');
    throw new Error(`${e}\n${fs.readFileSync(log, 'utf8')}`);
  }
  process.env.HTTPS_BASE = httpsBase;

  return async () => {
    // The script stops both servers by their PIDs; the group signal reaches them too.
    stop('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    if (running()) stop('SIGKILL');
    const output = fs.readFileSync(log, 'utf8');
    if (/panicked at/.test(output)) {
      throw new Error(`the production server panicked during the https tests (${log}):\n${output}`);
    }
  };
}
