//! Typed HTTP client for the isolated tenant, and the request/response types of its API.
