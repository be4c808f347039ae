// Intentionally empty: every wrapper is static inline in the header.
