// Passkeys on this site's pages: the browser's WebAuthn calls, around the server's two-step
// ceremonies (POST …/begin answers the options as JSON text and a ceremony token; the second
// POST sends the token back with the credential as JSON text). Buttons carry
// `data-passkey="sign-in" | "add" | "reauth"`; they are shown (`html.has-passkeys`) only where
// the browser can use passkeys. On the sign-in page the browser may also offer a passkey in the
// username field's autofill (conditional mediation).

const toBuf = (text) => {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
};
const fromBuf = (buf) =>
  btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

function creationOptions(json) {
  const pk = JSON.parse(json).publicKey;
  pk.challenge = toBuf(pk.challenge);
  pk.user.id = toBuf(pk.user.id);
  for (const c of pk.excludeCredentials || []) c.id = toBuf(c.id);
  return pk;
}

function requestOptions(json) {
  const pk = JSON.parse(json).publicKey;
  pk.challenge = toBuf(pk.challenge);
  for (const c of pk.allowCredentials || []) c.id = toBuf(c.id);
  return pk;
}

/** The credential as JSON text, as `PublicKeyCredential.toJSON()` gives it. */
function credentialJson(cred) {
  const r = cred.response;
  const response = { clientDataJSON: fromBuf(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = fromBuf(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = fromBuf(r.authenticatorData);
    response.signature = fromBuf(r.signature);
    response.userHandle = r.userHandle && r.userHandle.byteLength ? fromBuf(r.userHandle) : null;
  }
  return JSON.stringify({
    id: cred.id,
    rawId: fromBuf(cred.rawId),
    type: cred.type,
    response,
    clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
  });
}

/** POSTs a form to the API: its JSON answer, or throws the error's JSON. */
async function post(path, fields = {}) {
  const res = await fetch(path, {
    method: 'POST',
    headers: { Accept: 'application/json' },
    body: new URLSearchParams(fields),
    credentials: 'same-origin',
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw body;
  return body;
}

/** Where to go after signing in: a path on this site (as the server checks it), else the
 * profile. */
const next = () => {
  const asked = new URLSearchParams(location.search).get('next') || '';
  return /^\/(?![\/\\])[\x21-\x7e]*$/.test(asked) && !asked.includes('\\') ? asked : '/profile';
};

function showError(button, error) {
  const out = button.closest('form, section, div')?.querySelector('[data-passkey-error]');
  if (!out) return;
  const cancelled = error && (error.name === 'NotAllowedError' || error.name === 'AbortError');
  out.textContent = cancelled
    ? 'No passkey was used. Try again, or use your password.'
    : (error && error.description) || 'That did not work. Please try again.';
  out.hidden = false;
}

let conditional = null; // the autofill offer waiting on the sign-in page

async function signIn() {
  const { ceremony, options } = await post('/api/passkeys/sign-in/begin');
  const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
  await post('/api/passkeys/sign-in', { ceremony, credential: credentialJson(cred), next: next() });
  location.assign(next());
}

/** The username field's autofill offer: a conditional request, begun again before its ceremony
 * (5 minutes) runs out. Only the browser's own "nothing chosen" is quiet; a refusal by the
 * server is shown. */
async function offer(field) {
  const { ceremony, options } = await post('/api/passkeys/sign-in/begin');
  conditional = new AbortController();
  const renew = setTimeout(() => conditional.abort(), 240_000);
  let cred;
  try {
    cred = await navigator.credentials.get({ publicKey: requestOptions(options), mediation: 'conditional', signal: conditional.signal });
  } catch (e) {
    clearTimeout(renew);
    // Aborted to renew it (not by a button, which aborts and takes over): offer again.
    if (e && e.name === 'AbortError' && !buttonTookOver) offer(field).catch(() => {});
    return;
  }
  clearTimeout(renew);
  try {
    await post('/api/passkeys/sign-in', { ceremony, credential: credentialJson(cred), next: next() });
    location.assign(next());
  } catch (e) {
    const button = document.querySelector('[data-passkey="sign-in"]');
    if (button) showError(button, e);
    offer(field).catch(() => {});
  }
}

let buttonTookOver = false;

async function reauth(back) {
  const { ceremony, options } = await post('/api/passkeys/sign-in/begin');
  const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
  await post('/api/passkeys/reauth', { ceremony, credential: credentialJson(cred) });
  location.assign(`${back}?reauth=ok`);
}

async function add(button) {
  let challenge;
  try {
    challenge = await post('/api/passkeys/register/begin');
  } catch (e) {
    if (e && e.error === 'reauth_required') {
      location.assign('/security?reauth=needed');
      return;
    }
    throw e;
  }
  const cred = await navigator.credentials.create({ publicKey: creationOptions(challenge.options) });
  const name = button.closest('form, section')?.querySelector('[name="passkey_name"]')?.value || '';
  await post('/api/passkeys/register', { ceremony: challenge.ceremony, credential: credentialJson(cred), name });
  location.assign('/security?passkey=added');
}

if (window.PublicKeyCredential && navigator.credentials) {
  document.documentElement.classList.add('has-passkeys');
  document.addEventListener('click', (event) => {
    const button = event.target.closest('[data-passkey]');
    if (!button) return;
    event.preventDefault();
    if (button.disabled) return;
    if (conditional) {
      buttonTookOver = true;
      conditional.abort(); // one request at a time
    }
    const action = button.dataset.passkey;
    button.disabled = true;
    const run =
      action === 'sign-in' ? signIn() : action === 'reauth' ? reauth(button.dataset.back || location.pathname) : add(button);
    run.catch((e) => showError(button, e)).finally(() => {
      button.disabled = false;
    });
  });
  // The username field's autofill offers the passkeys of this site.
  const field = document.querySelector('input[autocomplete~="webauthn"]');
  if (field && PublicKeyCredential.isConditionalMediationAvailable) {
    PublicKeyCredential.isConditionalMediationAvailable()
      .then((available) => (available ? offer(field) : null))
      .catch(() => {}); // the offer could not begin (the server is busy): the button remains
  }
}
