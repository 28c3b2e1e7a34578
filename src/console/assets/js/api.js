// The console's only way to the server: the public API, with the credential the person signed
// in with. The credential lives in sessionStorage: gone when the tab closes, never sent to any
// other origin, never in a cookie.

const STORAGE_KEY = 'payrail.console.credential';

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `The server answered ${status}`);
    this.status = status;
    this.code = problem?.code;
  }
}

/** `{kind: 'tenant' | 'admin', token}` or null. */
export function credential() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY));
  } catch {
    return null;
  }
}

export function signOut() {
  sessionStorage.removeItem(STORAGE_KEY);
}

async function request(path, token, options = {}) {
  const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method: options.method || 'GET',
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    credentials: 'omit',
    cache: 'no-store',
  });
  const type = response.headers.get('content-type') || '';
  const body = type.includes('json') ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, typeof body === 'object' ? body : null);
  return body;
}

/** Checks the token against the API, then keeps it: a tenant key (`prk_…`) or the admin token. */
export async function signIn(token) {
  const kind = token.startsWith('prk_') ? 'tenant' : 'admin';
  const probe = kind === 'tenant' ? '/api/invoices?pageSize=1' : '/api/tenants?pageSize=1';
  try {
    await request(probe, token);
  } catch (error) {
    if (error.status === 401) {
      throw new Error(kind === 'tenant'
        ? 'The server refused this API key: it is wrong, revoked, or of another installation.'
        : 'The server refused this admin token.');
    }
    throw error;
  }
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ kind, token }));
  return kind;
}

/** Calls the API as the signed-in user; a 401 signs out (the key was revoked meanwhile). */
export async function api(path, options) {
  const current = credential();
  if (!current) throw new ApiError(401, { detail: 'Not signed in.' });
  try {
    return await request(path, current.token, options);
  } catch (error) {
    if (error.status === 401) {
      signOut();
      window.dispatchEvent(new CustomEvent('payrail:signed-out', { detail: error.message }));
    }
    throw error;
  }
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '' && v !== false) q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}
