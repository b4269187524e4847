"""HTTP API: the app factory, one thin router per domain, one error map."""
