// Sign-in: OpenID Connect authorization code flow with PKCE (S256), the page a public client.
// Only the PKCE verifier and state wait in sessionStorage across the redirect to the identity
// provider, and are removed when the code comes back; the access token lives in memory only.

const PENDING = "mdmbus.privacy.pkce";

function base64url(bytes) {
  let text = "";
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText(n) {
  return base64url(crypto.getRandomValues(new Uint8Array(n)));
}

export async function loadConfig() {
  const response = await fetch("/privacy/config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`the sign-in configuration is unavailable (${response.status})`);
  return response.json();
}

function redirectUri(config) {
  return config.redirect_uri || `${location.origin}/privacy/`;
}

/** Sends the browser to the identity provider's authorization endpoint. */
export async function startSignIn(config) {
  const verifier = randomText(48);
  const state = randomText(24);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const params = new URLSearchParams({
    response_type: "code", client_id: config.client_id, redirect_uri: redirectUri(config),
    scope: config.scope || "openid", state, code_challenge: challenge,
    code_challenge_method: "S256",
  });
  location.assign(`${config.authorization_endpoint}?${params}`);
}

/**
 * Completes a sign-in when the provider sent the browser back with a code: returns the access
 * token, or null when the address carries no answer of the provider. Throws with a message
 * for the user when the provider refused or the answer does not match the request.
 */
export async function finishSignIn(config) {
  const query = new URLSearchParams(location.search);
  if (!query.has("code") && !query.has("error")) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, "", "/privacy/");
  if (query.has("error")) {
    throw new Error(`the identity provider refused the sign-in: ${query.get("error_description") || query.get("error")}`);
  }
  if (!pending || pending.state !== query.get("state")) {
    throw new Error("this sign-in answer does not belong to a sign-in started here; sign in again");
  }
  const response = await fetch(config.token_endpoint, {
    method: "POST", cache: "no-store", credentials: "omit",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code: query.get("code"), redirect_uri: redirectUri(config),
      client_id: config.client_id, code_verifier: pending.verifier,
    }),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok || !answer.access_token) {
    throw new Error(`the sign-in could not be completed: ${answer.error_description || answer.error || response.status}`);
  }
  return answer.access_token;
}

/** The token's claims, read without verifying (the gateway verifies; the page only needs exp). */
export function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}
