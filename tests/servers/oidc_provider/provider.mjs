// A real OpenID Connect provider on loopback for Postwerk's single sign-on test: panva's oidc-provider with its
// development login and consent pages. Usage: node provider.mjs PORT; OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
// OIDC_REDIRECT_URI and OIDC_EMAIL (the one account's verified email) from the environment. Prints "ready".
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
const configuration = {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID,
    client_secret: process.env.OIDC_CLIENT_SECRET,
    redirect_uris: [process.env.OIDC_REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: process.env.OIDC_EMAIL, email_verified: true, name: id }),
  }),
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => false },
};
const provider = new Provider(issuer, configuration);
provider.listen(port, '127.0.0.1', () => { console.log('ready'); });
