"""HTTP only: routes, request and response schemas, and the mapping of errors to JSON responses."""
