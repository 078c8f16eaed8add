//! The issuer's signing keys: parsed from a JWKS document, each pinned to the one algorithm its
//! type allows, cached, and refetched when a token names a key we do not know (the IdP rotated)
//! — but at most once per interval, so a flood of tokens with made-up key ids cannot turn this
//! service into a load generator against the IdP.

use crate::AuthError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// Keys older than this are refetched on the next request (keeping the old ones if the IdP does
/// not answer), so a key the IdP withdrew stops being accepted within this time.
const MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Largest JWKS document accepted; real ones are a few kilobytes.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// One usable verification key and the only algorithm it may verify.
#[derive(Clone)]
pub(crate) struct PinnedKey {
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

/// Parses a JWKS document into usable keys by `kid`. Keys that are not signature keys, have no
/// `kid`, are of a type we do not accept, or declare an algorithm their type does not allow are
/// skipped (and logged), so one odd key does not take the whole set down.
pub(crate) fn parse_jwks(doc: &serde_json::Value) -> Result<HashMap<String, PinnedKey>, String> {
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("the document has no 'keys' array")?;
    let mut out = HashMap::new();
    for raw in keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            tracing::debug!("skipping a JWK of a form we do not read");
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            tracing::debug!("skipping a JWK without kid");
            continue;
        };
        match pin(&jwk) {
            Ok(pinned) => {
                out.insert(kid, pinned);
            }
            Err(why) => tracing::debug!(%kid, why, "skipping a JWK"),
        }
    }
    Ok(out)
}

/// The algorithm a key may be used with: EC P-256 → ES256, RSA → RS256, nothing else. A JWK
/// `alg`, when present, must agree.
fn pin(jwk: &Jwk) -> Result<PinnedKey, &'static str> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Err("not a signature key");
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return Err("key type not accepted (only EC P-256 and RSA)"),
    };
    let declared_ok = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(_) => false,
    };
    if !declared_ok {
        return Err("declared alg not allowed for the key type");
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "key material does not parse")?;
    Ok(PinnedKey { alg, key })
}

/// Where a remote key set is: a URL given outright, or the `jwks_uri` of the issuer's
/// discovery document, looked up on the first fetch and kept for the life of the process.
pub(crate) enum JwksAt {
    /// `HUSH_JWKS_URL`.
    Url(String),
    /// `HUSH_OIDC_ISSUER` without `HUSH_JWKS_URL`.
    Discover {
        issuer: String,
        found: tokio::sync::OnceCell<String>,
    },
}

impl JwksAt {
    pub(crate) fn discover(issuer: String) -> Self {
        Self::Discover {
            issuer,
            found: tokio::sync::OnceCell::new(),
        }
    }

    /// The key set's URL, discovering it if need be. Runs under the fetch lock and its rate
    /// limit, so a failing discovery is retried no more often than a failing key fetch.
    async fn url(&self, client: &reqwest::Client) -> anyhow::Result<String> {
        match self {
            Self::Url(u) => Ok(u.clone()),
            Self::Discover { issuer, found } => found
                .get_or_try_init(|| async {
                    let d = crate::oidc::discover(client, issuer).await?;
                    tracing::info!(%issuer, jwks_uri = %d.jwks_uri, "discovered the identity provider's key set");
                    anyhow::Ok(d.jwks_uri)
                })
                .await
                .cloned(),
        }
    }
}

/// Where keys come from.
pub(crate) enum Source {
    /// Fetched over HTTP(S) and cached.
    Remote {
        at: Arc<JwksAt>,
        client: reqwest::Client,
        min_refetch: Duration,
    },
    /// Fixed at construction (the in-process dev issuer, tests); never refetched.
    Static,
}

struct Cache {
    keys: HashMap<String, PinnedKey>,
    fetched_at: Option<Instant>,
}

/// The key cache of one verifier.
pub(crate) struct KeySet {
    source: Source,
    /// Shared with the task a fetch runs in.
    cache: Arc<RwLock<Arc<Cache>>>,
    /// Serialises fetches and remembers when the last one was attempted (successful or not).
    /// Held by the task a fetch runs in until the fetched set is cached.
    last_attempt: Arc<Mutex<Option<Instant>>>,
}

impl KeySet {
    pub(crate) fn remote(at: JwksAt, client: reqwest::Client, min_refetch: Duration) -> Self {
        Self::with(
            Source::Remote {
                at: Arc::new(at),
                client,
                min_refetch,
            },
            HashMap::new(),
        )
    }

    pub(crate) fn fixed(keys: HashMap<String, PinnedKey>) -> Self {
        Self::with(Source::Static, keys)
    }

    fn with(source: Source, keys: HashMap<String, PinnedKey>) -> Self {
        Self {
            source,
            cache: Arc::new(RwLock::new(Arc::new(Cache {
                keys,
                fetched_at: None,
            }))),
            last_attempt: Arc::new(Mutex::new(None)),
        }
    }

    /// The key named `kid`, fetching the set if it is unknown or stale and the rate limit allows.
    pub(crate) async fn get(&self, kid: &str) -> Result<Option<PinnedKey>, AuthError> {
        let Source::Remote { min_refetch, .. } = &self.source else {
            return Ok(self.cache.read().await.keys.get(kid).cloned());
        };
        let cached = self.cache.read().await.clone();
        let fresh = cached.fetched_at.is_some_and(|t| t.elapsed() < MAX_AGE);
        if fresh {
            if let Some(k) = cached.keys.get(kid) {
                return Ok(Some(k.clone()));
            }
        }

        let stale_hit = cached.keys.get(kid).cloned();
        let last = match (self.last_attempt.clone().try_lock_owned(), stale_hit) {
            (Ok(guard), _) => guard,
            // Another request is refreshing a stale set that already knows this key: answer
            // from the stale set rather than queue behind a possibly slow IdP.
            (Err(_), Some(k)) => return Ok(Some(k)),
            (Err(_), None) => self.last_attempt.clone().lock_owned().await,
        };
        // Someone may have fetched while we waited for the lock.
        let cached = self.cache.read().await.clone();
        if cached.fetched_at.is_some_and(|t| t.elapsed() < MAX_AGE) {
            if let Some(k) = cached.keys.get(kid) {
                return Ok(Some(k.clone()));
            }
        }
        if last.is_some_and(|t| t.elapsed() < *min_refetch) {
            // Rate-limited: answer from what we have, however old.
            return Ok(cached.keys.get(kid).cloned());
        }
        let fetched = self.fetch_holding(last).await;
        match fetched {
            Ok(fetched) => Ok(fetched.keys.get(kid).cloned()),
            Err(e) => {
                tracing::warn!(error = %e, "fetching the identity provider's JWKS failed");
                match cached.keys.get(kid) {
                    // Stale but known: better than refusing everyone while the IdP is down.
                    Some(k) => Ok(Some(k.clone())),
                    None => Err(AuthError::KeysUnavailable(e)),
                }
            }
        }
    }
}

impl KeySet {
    /// Fetches the key set now, whatever the rate limit says, waiting for a fetch under way:
    /// the start-up warm-up, which paces its own retries. The number of usable keys.
    pub(crate) async fn refresh(&self) -> anyhow::Result<usize> {
        if !matches!(self.source, Source::Remote { .. }) {
            return Ok(self.cache.read().await.keys.len());
        }
        let last = self.last_attempt.clone().lock_owned().await;
        Ok(self.fetch_holding(last).await?.keys.len())
    }

    /// Fetches (discovering the URL first if need be) and caches the key set, holding `last`,
    /// the fetch lock, until it is cached, and recording the attempt in it.
    async fn fetch_holding(
        &self,
        mut last: tokio::sync::OwnedMutexGuard<Option<Instant>>,
    ) -> anyhow::Result<Arc<Cache>> {
        let Source::Remote { at, client, .. } = &self.source else {
            anyhow::bail!("a fixed key set is not fetched");
        };
        *last = Some(Instant::now());
        // The fetch runs to its end in a task of its own, holding the lock until the set is
        // cached. Run by the request itself, a request dropped mid-fetch (its client went away)
        // left the attempt recorded and nothing cached: every token was refused as signed by
        // an unknown key until `min_refetch` had passed. Requests waiting for the lock find
        // the set this fetch cached.
        let (client, at, cache) = (client.clone(), at.clone(), self.cache.clone());
        tokio::spawn(async move {
            let _last = last;
            let url = at.url(&client).await?;
            // Replacing the whole set is what retires a key: one the IdP no longer publishes
            // stops verifying as soon as a fetch has seen it gone.
            let fetched = Arc::new(Cache {
                keys: fetch(&client, &url).await?,
                fetched_at: Some(Instant::now()),
            });
            *cache.write().await = fetched.clone();
            anyhow::Ok(fetched)
        })
        .await
        .unwrap_or_else(|lost| Err(anyhow::anyhow!("the fetch did not finish: {lost}")))
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> anyhow::Result<HashMap<String, PinnedKey>> {
    let res = client.get(url).send().await?.error_for_status()?;
    if res
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        anyhow::bail!("JWKS document larger than {MAX_JWKS_BYTES} bytes");
    }
    let body = res.bytes().await?;
    if body.len() > MAX_JWKS_BYTES {
        anyhow::bail!("JWKS document larger than {MAX_JWKS_BYTES} bytes");
    }
    let doc: serde_json::Value = serde_json::from_slice(&body)?;
    parse_jwks(&doc).map_err(|e| anyhow::anyhow!("JWKS document refused: {e}"))
}
