"""Authentication, authorization and hardened parsing of untrusted input."""
