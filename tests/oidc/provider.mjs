// The OpenID Provider the tests log in through: oidc-provider on 127.0.0.1, two people, a minimal log-in page.
//
// node provider.mjs CONFIG.json   (written by tests/oidc/__init__.py)
// CONFIG: {"port": 5xxxx, "clients": [{client_id, client_secret, redirect_uris, post_logout_redirect_uris}]}
// node provider.mjs               (by hand, the README's example: port 9400, for `make run` on 127.0.0.1:8000)
//
// People: alice (group gatehouse-admins), bob (group staff), eve (calls herself "admin", a taken local name).
// Consent is given by the log-in itself, so a log-in is one form. Every page is plain HTML without outside
// resources (the library's default pages load a web font from elsewhere; tests stay on loopback).
//
// For the refusal tests, POST /__test/tamper {"mode": ...} changes the ID token of the NEXT token response,
// re-signed with the provider's own key, so only that one claim is wrong:
//   expired: iat and exp an hour in the past; audience: aud is the other client's (azp ours); issuer: another iss;
//   signature: signed with a key the provider never published.
import { readFileSync } from 'node:fs';

import { decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import Provider from 'oidc-provider';

const BY_HAND = {
  port: 9400,
  clients: [
    {
      client_id: 'gatehouse', client_secret: 'gatehouse-test-client-secret',
      redirect_uris: ['http://127.0.0.1:8000/login/oidc/callback', 'http://localhost:8000/login/oidc/callback'],
      post_logout_redirect_uris: ['http://127.0.0.1:8000/login', 'http://localhost:8000/login'],
    },
    { client_id: 'other-app', client_secret: 'other-app-secret', redirect_uris: ['http://127.0.0.1:9/callback'] },
  ],
};
const config = process.argv[2] ? JSON.parse(readFileSync(process.argv[2], 'utf8')) : BY_HAND;
const issuer = `http://127.0.0.1:${config.port}`;

const PEOPLE = {
  alice: { sub: 'sub-alice-7f3a', password: 'alice-password', name: 'Alice Admin', groups: ['gatehouse-admins', 'staff'] },
  bob: { sub: 'sub-bob-91c2', password: 'bob-password', name: 'Bob User', groups: ['staff'] },
  eve: { sub: 'sub-eve-3d5e', password: 'eve-password', name: 'Eve', groups: [], username: 'admin' },
};

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };
const strangerKey = (await generateKeyPair('RS256')).privateKey;
let tamper = null;

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${title}</title><style>body{font:16px sans-serif;max-width:22rem;margin:3rem auto}input,button{display:block;
width:100%;margin:.4rem 0 1rem;padding:.4rem;font-size:1rem}</style></head><body>${body}</body></html>`;
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readForm(req) {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  return Object.fromEntries(new URLSearchParams(raw));
}

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    grant_types: ['authorization_code'], response_types: ['code'], ...client,
  })),
  jwks: { keys: [signingKey] },
  cookies: { keys: ['test-cookie-key-not-secret'] },
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email'], groups: ['groups'] },
  conformIdTokenClaims: false, // the profile and groups claims go into the ID token itself
  ttl: { IdToken: 600, AccessToken: 600, AuthorizationCode: 60, Interaction: 600, Session: 3600, Grant: 3600 },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Sign out', `<h1>Sign out of the test provider?</h1>${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>`);
      },
      postLogoutSuccessSource: async (ctx) => { ctx.body = page('Signed out', '<h1>Signed out</h1>'); },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const [username, person] = Object.entries(PEOPLE).find(([, p]) => p.sub === id) || [];
    if (!person) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id, preferred_username: person.username || username, name: person.name,
          email: `${username}@example.test`, groups: person.groups,
        };
      },
    };
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>Error</h1><p>${escape(out.error)}: ${escape(out.error_description || '')}</p>`);
  },
});
provider.proxy = false;

// The log-in page, the tamper switch, and the token response rewrite: ahead of the provider's own routes
// (oidc-provider 8's use() puts a middleware there; 8 is the last major that runs on Debian bookworm's Node 18).
provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([\w-]+)$/);
  if (match) return interaction(ctx);
  if (ctx.path === '/__test/tamper' && ctx.method === 'POST') {
    let raw = '';
    for await (const chunk of ctx.req) raw += chunk;
    tamper = JSON.parse(raw).mode || null;
    ctx.body = { tamper };
    return undefined;
  }
  await next();
  if (ctx.path === '/token' && tamper && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: await rewrite(ctx.body.id_token, tamper) };
    tamper = null;
  }
  return undefined;
});

async function interaction(ctx) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.prompt.name === 'consent') return finish(ctx, details, details.session.accountId);
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = page('Test provider', `<h1>Test provider</h1>
<form method="post" action="/interaction/${details.uid}">
<label>Username <input name="login" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button></form>`);
    return undefined;
  }
  const form = await readForm(ctx.req);
  const person = PEOPLE[form.login];
  if (!person || person.password !== form.password) {
    ctx.status = 401;
    ctx.type = 'html';
    ctx.body = page('Test provider', '<p>Wrong username or password.</p>');
    return undefined;
  }
  return finish(ctx, details, person.sub);
}

async function finish(ctx, details, accountId) {
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const result = { login: { accountId }, consent: { grantId: await grant.save() } };
  ctx.respond = false; // interactionFinished answers on the raw response
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  return undefined;
}

async function rewrite(idToken, mode) {
  const claims = decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  let key = privateKey;
  if (mode === 'expired') Object.assign(claims, { iat: now - 7200, exp: now - 3600 });
  else if (mode === 'audience') { // for the other client, "authorized" for us: only an aud check catches it
    Object.assign(claims, { azp: claims.aud, aud: config.clients.find((c) => c.client_id !== claims.aud).client_id });
  }
  else if (mode === 'issuer') claims.iss = 'http://127.0.0.1:1/';
  else if (mode === 'signature') key = strangerKey;
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: signingKey.kid, typ: 'JWT' }).sign(key);
}

provider.listen(config.port, '127.0.0.1', () => console.log(`listening on ${issuer}`));
