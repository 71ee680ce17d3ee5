"""Security definitions: who a caller is (Basic Auth, API keys), checked in constant time."""
