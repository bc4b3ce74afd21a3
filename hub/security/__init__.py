"""Security: OAuth2 clients and tokens (client credentials, SMART Backend Services), SMART v2
scopes, roles, access policy per request, and audit."""
