//! Validates users' OIDC JWTs against the issuer's JWKS, mints and checks service tokens, and runs the dev issuer.
